// Dead letters: filter, inspect (error and traceback), select and replay one, a
// selection, or everything matching the filter, after a confirmation.

import * as api from "../api.js";
import { queueNames } from "../state.js";
import { confirmDialog, toast } from "../ui.js";
import { h, fill, stackTable, fmtTime, fmtAgo, fmtNum, codeBlock, json, empty, shortId, toQuery } from "../util.js";

const PAGE = 100;
const FORBIDDEN = "This key may not replay (admin scope needed).";

export function mount(root, { query, navigate }) {
  const filters = { queue: query.queue || "", task: query.task || "", job_id: query.job_id || "" };
  const selected = new Set();
  const expanded = new Set();
  let ops = [];
  let pages = 1;
  let more = false;
  let lastSig = "";
  let generation = 0;

  const queueList = h("datalist", { id: "dlq-queue-options" });
  const form = h("form", { class: "filters", id: "dlq-filters" },
    h("label", { class: "field" }, h("span", {}, "Queue"),
      h("input", { name: "queue", list: "dlq-queue-options", placeholder: "any queue", value: filters.queue, autocomplete: "off" })),
    h("label", { class: "field" }, h("span", {}, "Task"),
      h("input", { name: "task", placeholder: "any task", value: filters.task, autocomplete: "off" })),
    h("label", { class: "field" }, h("span", {}, "Job id"),
      h("input", { name: "job_id", placeholder: "any job", value: filters.job_id, autocomplete: "off", spellcheck: "false" })),
    h("button", { class: "btn btn-ghost-border", type: "button", onclick: () => {
      for (const el of form.elements) if (el.name) el.value = "";
      apply();
    } }, "Clear"),
    queueList);
  const replaySelected = h("button", { class: "btn btn-primary", type: "button", id: "replay-selected", disabled: true,
    onclick: () => replay({ ids: [...selected] }, selected.size) }, "Replay selected");
  const replayMatching = h("button", { class: "btn btn-ghost-border", type: "button", id: "replay-matching",
    onclick: () => {
      const any = Object.values(filters).some(Boolean);
      const body = any ? Object.fromEntries(Object.entries(filters).filter(([, v]) => v)) : { all: true };
      replay(body, null);
    } }, "Replay all matching");
  const notice = h("div", { class: "notice", role: "alert", hidden: true });
  const list = h("div", { class: "table-wrap" });
  const footer = h("div", { class: "pager" });
  const summary = h("span", { class: "muted" });

  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Dead letters"),
      h("p", { class: "muted" }, "Operations that used up their attempts or failed permanently, oldest first. A replay starts them again from attempt 1.")),
    h("section", { class: "card" }, form,
      h("div", { class: "toolbar" }, summary, h("div", { class: "toolbar-actions" }, replaySelected, replayMatching)),
      notice, list, footer));

  function apply() {
    const fd = new FormData(form);
    for (const k of Object.keys(filters)) filters[k] = String(fd.get(k) || "").trim();
    selected.clear();
    pages = 1;
    navigate(`#/dlq${toQuery(filters)}`, { replace: true });
    refresh();
  }
  form.addEventListener("change", apply);
  form.addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });

  function showNotice(text, kind) {
    notice.hidden = !text;
    notice.className = `notice notice-${kind || "error"}`;
    fill(notice, text || "");
  }

  async function replay(body, count) {
    const what = body.ids
      ? `${count === 1 ? "this dead operation" : `these ${fmtNum(count)} dead operations`}`
      : body.all ? "every dead operation" : "every dead operation matching the filter";
    const filterText = body.ids ? null : body.all ? "No filter: this replays the whole dead-letter queue of this key's tenant."
      : `Filter: ${Object.entries(body).map(([k, v]) => `${k} = ${v}`).join(", ")}`;
    const ok = await confirmDialog({
      title: "Replay dead letters?",
      body: [h("p", {}, `Replay ${what}? ${count === 1 ? "It starts" : "They start"} again from attempt 1.`),
        filterText ? h("p", { class: "muted" }, filterText) : null,
        body.ids ? null : h("p", { class: "muted" }, `${fmtNum(ops.length)}${more ? "+" : ""} listed on this page.`)],
      confirmText: count ? `Replay ${fmtNum(count)}` : "Replay all matching",
    });
    if (!ok) return;
    try {
      const result = await api.post("/v1/dlq/replay", body);
      showNotice("");
      for (const id of result.replayed) selected.delete(id);
      toast(`Replayed ${fmtNum(result.count)} operation${result.count === 1 ? "" : "s"}.`, "success");
    } catch (err) {
      if (err.status === 403) {
        showNotice(FORBIDDEN);
        toast(FORBIDDEN, "error");
      } else if (err.status !== 401) {
        showNotice(`Replay failed: ${err.message}`);
      }
      return;
    }
    refresh().catch(() => {});  // the next poll retries
  }

  function updateButtons() {
    replaySelected.disabled = selected.size === 0;
    replaySelected.textContent = selected.size ? `Replay selected (${fmtNum(selected.size)})` : "Replay selected";
    replayMatching.disabled = ops.length === 0;
    replayMatching.textContent = Object.values(filters).some(Boolean) ? "Replay all matching" : "Replay all";
  }

  function row(op) {
    const box = h("input", { type: "checkbox", "aria-label": `Select ${op.id}`, checked: selected.has(op.id),
      onchange: (ev) => {
        if (ev.target.checked) selected.add(op.id); else selected.delete(op.id);
        updateButtons();
        syncAll();
      } });
    const isOpen = expanded.has(op.id);
    const toggle = () => {
      if (expanded.has(op.id)) expanded.delete(op.id); else expanded.add(op.id);
      lastSig = "";
      render();
    };
    const main = h("tr", { class: `dl-row${isOpen ? " open" : ""}`, dataset: { id: op.id }, onclick: (ev) => {
      if (!ev.target.closest("input, a, button")) toggle();
    } },
    h("td", { class: "check" }, box),
    h("td", {}, h("div", { class: "task-name" }, op.task), h("div", { class: "mono muted small", title: op.id }, shortId(op.id))),
    h("td", {}, op.queue),
    h("td", { class: "err-cell" }, h("strong", {}, op.error?.type || "–"), h("div", { class: "muted small clamp" }, op.error?.message || "")),
    h("td", { class: "num" }, `${op.attempts} / ${op.max_attempts}`),
    h("td", { title: fmtTime(op.finished_at) }, fmtAgo(op.finished_at)),
    h("td", { class: "actions" },
      h("button", { class: "btn btn-small", type: "button", onclick: () => replay({ ids: [op.id] }, 1) }, "Replay"),
      h("button", { class: "btn-ghost btn-small", type: "button", "aria-expanded": String(isOpen), onclick: toggle }, isOpen ? "Hide" : "Inspect")));
    if (!isOpen) return [main];
    const detail = h("tr", { class: "dl-detail" }, h("td", { colspan: 7 },
      h("div", { class: "detail-grid" },
        h("div", {},
          h("p", { class: "error-line" }, h("strong", {}, op.error?.type || "Error"), `: ${op.error?.message || ""}`),
          op.error?.traceback ? codeBlock(op.error.traceback, "tb") : h("p", { class: "muted" }, "No traceback recorded.")),
        h("div", {},
          h("h4", {}, "Arguments"), codeBlock(json(op.args), "args"),
          h("dl", { class: "kv" },
            h("dt", {}, "Job"), h("dd", {}, h("a", { href: `#/jobs/${op.job_id}`, class: "mono link" }, op.job_id)),
            h("dt", {}, "Key"), h("dd", { class: "mono" }, op.key ?? "–"),
            h("dt", {}, "Started"), h("dd", {}, fmtTime(op.started_at)),
            h("dt", {}, "Finished"), h("dd", {}, fmtTime(op.finished_at)),
            h("dt", {}, "Worker"), h("dd", { class: "mono" }, op.worker_id ?? "–"))))));
    return [main, detail];
  }

  let allBox = null;
  function syncAll() {
    if (!allBox) return;
    const n = ops.filter((o) => selected.has(o.id)).length;
    allBox.checked = n > 0 && n === ops.length;
    allBox.indeterminate = n > 0 && n < ops.length;
  }

  function render() {
    const sig = JSON.stringify([ops.map((o) => [o.id, o.finished_at]), Math.floor(Date.now() / 10000), more]);
    fill(summary, ops.length ? `${fmtNum(ops.length)}${more ? "+" : ""} dead operation${ops.length === 1 ? "" : "s"}` : "");
    updateButtons();
    if (sig === lastSig) return;
    lastSig = sig;
    if (ops.length === 0) {
      allBox = null;
      fill(list, empty(Object.values(filters).some(Boolean) ? "No dead operation matches these filters." : "The dead-letter queue is empty."));
      fill(footer);
      return;
    }
    allBox = h("input", { type: "checkbox", "aria-label": "Select all shown", onchange: (ev) => {
      for (const o of ops) if (ev.target.checked) selected.add(o.id); else selected.delete(o.id);
      lastSig = "";
      render();
    } });
    fill(list, h("table", { class: "table", id: "dlq-table" },
      h("thead", {}, h("tr", {}, h("th", { class: "check" }, allBox), h("th", {}, "Operation"), h("th", {}, "Queue"),
        h("th", {}, "Error"), h("th", { class: "num" }, "Attempts"), h("th", {}, "Died"), h("th", {}, ""))),
      h("tbody", {}, ops.map(row))));
    stackTable(list.querySelector("table"));
    syncAll();
    fill(footer, more ? h("button", { class: "btn btn-ghost-border", type: "button", onclick: () => { pages += 1; refresh(); } }, "Load more") : null);
  }

  async function refresh() {
    fill(queueList, queueNames().map((q) => h("option", { value: q })));
    const out = [];
    let cursor = null;
    let hasMore = false;
    const mine = ++generation;
    for (let i = 0; i < pages; i++) {
      const page = await api.get(`/v1/dlq${toQuery({ ...filters, limit: PAGE, cursor })}`);
      out.push(...page.operations);
      cursor = page.next_cursor;
      hasMore = cursor !== null;
      if (!hasMore) break;
    }
    if (mine !== generation) return;  // the filters changed meanwhile: a newer answer wins
    more = hasMore;
    ops = out;
    const visible = new Set(ops.map((o) => o.id));
    for (const id of [...selected]) if (!visible.has(id)) selected.delete(id);
    render();
  }

  return { refresh };
}
