// Workers: where they run, what they serve, their load, heartbeat and configuration drift.

import * as api from "../api.js";
import { h, fill, stackTable, fmtAgo, fmtTime, fmtNum, badge, empty } from "../util.js";

export function mount(root) {
  let includeGone = false;
  let generation = 0;
  const list = h("div", { class: "table-wrap" });
  const summary = h("span", { class: "muted" });
  const gone = h("label", { class: "check-label" },
    h("input", { type: "checkbox", onchange: (ev) => { includeGone = ev.target.checked; refresh(); } }),
    " Show workers that are gone");
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Workers"),
      h("p", { class: "muted" }, "Registered worker processes. Drift: its configuration differs from another live worker of a queue it shares.")),
    h("section", { class: "card" }, h("div", { class: "toolbar" }, summary, gone), list));

  async function refresh() {
    const mine = ++generation;
    const { workers } = await api.get(`/v1/workers${includeGone ? "?include_gone=true" : ""}`);
    if (mine !== generation) return;
    const live = workers.filter((w) => w.status === "live").length;
    const drift = workers.filter((w) => w.drift).length;
    fill(summary, `${fmtNum(live)} live` + (drift ? ` · ${drift} with configuration drift` : ""));
    if (workers.length === 0) {
      fill(list, empty("No worker has registered. Start one with `conveyor worker` or `conveyor serve`."));
      return;
    }
    fill(list, h("table", { class: "table", id: "workers-table" },
      h("thead", {}, h("tr", {},
        h("th", {}, "Host"), h("th", { class: "num" }, "PID"), h("th", {}, "Status"), h("th", {}, "Queues"),
        h("th", { class: "num" }, "Concurrency"), h("th", {}, "In flight"), h("th", { class: "num" }, "Processed"),
        h("th", {}, "Last heartbeat"), h("th", {}, "Started"), h("th", {}, "Version / config"))),
      h("tbody", {}, workers.map((w) => {
        const load = w.concurrency ? Math.min(1, w.in_flight / w.concurrency) : 0;
        const stale = Date.now() / 1000 - w.last_seen_at > 15;
        const meter = h("meter", { min: 0, max: 1, value: load.toFixed(3), low: 0.7, high: 0.9, optimum: 0.2, "aria-label": "load" });
        return h("tr", { dataset: { id: w.id } },
          h("td", {}, h("div", { class: "mono" }, w.host), h("div", { class: "muted small mono" }, w.id)),
          h("td", { class: "num mono" }, String(w.pid)),
          h("td", {}, badge(w.status === "live" ? "live" : w.status)),
          h("td", {}, w.queues.map((q) => h("span", { class: "chip" }, q))),
          h("td", { class: "num" }, fmtNum(w.concurrency)),
          h("td", { class: "load" }, h("span", { class: "num-inline" }, fmtNum(w.in_flight)), meter),
          h("td", { class: "num" }, fmtNum(w.processed)),
          h("td", { class: stale && w.status === "live" ? "warn" : null, title: fmtTime(w.last_seen_at) }, fmtAgo(w.last_seen_at)),
          h("td", { title: fmtTime(w.started_at) }, fmtAgo(w.started_at)),
          h("td", {}, h("span", { class: "mono small" }, `${w.version} · ${w.config_hash}`),
            w.drift ? h("span", { class: "badge s-dead", title: "Configuration differs from another live worker of a shared queue" }, "drift")
              : h("span", { class: "badge s-succeeded" }, "in sync")));
      }))));
    stackTable(list.querySelector("table"));
  }

  return { refresh };
}
