// Jobs: newest first, filtered by status, queue, task (server side) and creation time
// (client side), with a search by id and cursor paging.

import * as api from "../api.js";
import { queueNames } from "../state.js";
import { h, fill, stackTable, fmtTime, fmtAgo, fmtNum, badge, empty, shortId, toQuery } from "../util.js";

const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const TIMES = [["", "Any time"], ["300", "Last 5 min"], ["900", "Last 15 min"], ["3600", "Last hour"],
  ["86400", "Last 24 h"], ["604800", "Last 7 days"]];
const PAGE = 50;

function select(name, label, options, value) {
  return h("label", { class: "field" }, h("span", {}, label),
    h("select", { name }, options.map(([v, text]) => h("option", { value: v, selected: v === (value || "") }, text))));
}

export function mount(root, { query, navigate }) {
  const filters = { status: query.status || "", queue: query.queue || "", task: query.task || "", since: query.since || "" };
  let cursors = [];          // cursors of the pages before the current one
  let cursor = query.cursor || "";
  let tasks = [];

  const queueList = h("datalist", { id: "queue-options" });
  const taskList = h("datalist", { id: "task-options" });
  const form = h("form", { class: "filters", id: "job-filters" },
    select("status", "Status", [["", "Any status"], ...STATUSES.map((s) => [s, s])], filters.status),
    h("label", { class: "field" }, h("span", {}, "Queue"),
      h("input", { name: "queue", list: "queue-options", placeholder: "any queue", value: filters.queue, autocomplete: "off" })),
    h("label", { class: "field" }, h("span", {}, "Task"),
      h("input", { name: "task", list: "task-options", placeholder: "any task", value: filters.task, autocomplete: "off" })),
    select("since", "Created", TIMES, filters.since),
    h("button", { class: "btn btn-ghost-border", type: "button", onclick: () => {
      for (const el of form.elements) if (el.name) el.value = "";
      apply();
    } }, "Clear"),
    queueList, taskList);
  const search = h("form", { class: "search", role: "search" },
    h("input", { name: "id", type: "search", placeholder: "Go to job id…", "aria-label": "Job id", autocomplete: "off", spellcheck: "false" }),
    h("button", { class: "btn btn-primary", type: "submit" }, "Open"));
  const list = h("div", { class: "table-wrap" });
  const pager = h("div", { class: "pager" });
  const summary = h("span", { class: "muted" });

  root.append(
    h("div", { class: "page-head row" },
      h("div", {}, h("h1", {}, "Jobs"), h("p", { class: "muted" }, "Newest first. Click a job for its operations, results and errors.")),
      search),
    h("section", { class: "card" }, form, h("div", { class: "card-sub" }, summary), list, pager),
  );

  function apply() {
    const fd = new FormData(form);
    for (const k of Object.keys(filters)) filters[k] = String(fd.get(k) || "").trim();
    cursors = [];
    cursor = "";
    navigate(`#/jobs${toQuery(filters)}`, { replace: true });
    refresh();
  }
  form.addEventListener("change", apply);
  form.addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });
  search.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = search.elements.id.value.trim();
    if (id) location.hash = `#/jobs/${encodeURIComponent(id)}`;
  });

  let lastPage = null;
  let generation = 0;
  let lastRender = "";

  function render(page) {
    const since = Number(filters.since || 0);
    const cutoff = since ? Date.now() / 1000 - since : 0;
    const jobs = page.jobs.filter((j) => j.created_at >= cutoff);
    const sig = JSON.stringify([jobs.map((j) => [j.id, j.status, j.operations.map((o) => o.status)]), Math.floor(Date.now() / 10000), cursors.length]);
    fill(summary, `${fmtNum(jobs.length)} job${jobs.length === 1 ? "" : "s"} on this page` +
      (since && jobs.length < page.jobs.length ? ` (${page.jobs.length - jobs.length} older hidden by the time filter)` : ""));
    if (sig === lastRender) return;
    lastRender = sig;
    if (jobs.length === 0) {
      fill(list, empty(Object.values(filters).some(Boolean) ? "No job matches these filters." : "No job yet."));
    } else {
      fill(list, h("table", { class: "table clickable", id: "jobs-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Job"), h("th", {}, "Status"), h("th", {}, "Queue"),
          h("th", {}, "Operations"), h("th", {}, "Created"))),
        h("tbody", {}, jobs.map((j) => {
          const tasksOf = [...new Set(j.operations.map((o) => o.task))];
          const done = j.operations.filter((o) => ["succeeded", "dead", "cancelled"].includes(o.status)).length;
          const href = `#/jobs/${j.id}`;
          return h("tr", { dataset: { id: j.id }, onclick: (ev) => {
            if (!ev.target.closest("a")) location.hash = href;
          } },
          h("td", {}, h("a", { href, class: "mono", title: j.id }, shortId(j.id))),
          h("td", {}, badge(j.status)),
          h("td", {}, j.queue),
          h("td", {}, h("span", { class: "task-list" }, tasksOf.slice(0, 3).join(", ") + (tasksOf.length > 3 ? ` +${tasksOf.length - 3}` : "")),
            h("span", { class: "muted small" }, ` ${done}/${j.operations.length} done`)),
          h("td", { title: fmtTime(j.created_at) }, fmtTime(j.created_at), h("span", { class: "muted small" }, ` · ${fmtAgo(j.created_at)}`)));
        }))));
      stackTable(list.querySelector("table"));
    }
    fill(pager,
      h("button", { class: "btn btn-ghost-border", type: "button", disabled: cursors.length === 0, onclick: () => {
        cursor = cursors.pop() || "";
        refresh();
      } }, "← Newer"),
      h("span", { class: "muted small" }, `page ${cursors.length + 1}`),
      h("button", { class: "btn btn-ghost-border", type: "button", disabled: !page.next_cursor, onclick: () => {
        cursors.push(cursor);
        cursor = page.next_cursor;
        refresh();
      } }, "Older →"));
  }

  async function refresh() {
    fill(queueList, queueNames().map((q) => h("option", { value: q })));
    if (tasks.length === 0) {
      try {
        tasks = (await api.get("/v1/tasks")).tasks.map((t) => t.name);
        fill(taskList, tasks.map((t) => h("option", { value: t })));
      } catch (err) {
        if (err.status === 401) throw err;
      }
    }
    const params = { status: filters.status, queue: filters.queue, task: filters.task, limit: PAGE, cursor };
    const mine = ++generation;
    let page;
    try {
      page = await api.get(`/v1/jobs${toQuery(params)}`);
    } catch (err) {
      if (mine !== generation) return;
      if (err.status === 422 || err.status === 404) {
        lastRender = "";
        fill(list, empty(`The API refused these filters: ${err.message}`));
        return;
      }
      throw err;
    }
    if (mine !== generation) return;  // the filters changed meanwhile: a newer answer wins
    lastPage = page;
    render(lastPage);
  }

  return { refresh };
}
