// One job: its status, metadata and every operation with arguments, result, error and
// traceback, and the timing of its latest attempt.

import * as api from "../api.js";
import { h, fill, stackTable, shortId, fmtTime, fmtTimePrecise, fmtDuration, fmtAgo, badge, codeBlock, json, empty } from "../util.js";

function kv(label, value, cls) {
  return [h("dt", {}, label), h("dd", { class: cls || null }, value)];
}

function operation(op, openTracebacks) {
  const duration = durationOf(op);
  const tb = op.error?.traceback;
  const details = tb ? h("details", { class: "traceback", open: openTracebacks.has(op.id),
    ontoggle: (ev) => { if (ev.target.open) openTracebacks.add(op.id); else openTracebacks.delete(op.id); } },
  h("summary", {}, "Traceback"), codeBlock(tb, "tb")) : null;
  return h("article", { class: `card op op-${op.status}`, id: `op-${op.id}`, dataset: { opId: op.id } },
    h("div", { class: "op-head" },
      h("div", {}, h("h3", {}, op.task), h("div", { class: "mono muted small" }, op.id)),
      badge(op.status, "op-status")),
    h("dl", { class: "kv" },
      kv("Attempts", `${op.attempts} / ${op.max_attempts}`, "attempts"),
      kv("Key", op.key ?? "–", "mono"),
      kv("Priority", String(op.priority)),
      kv("Timeout", op.timeout_s ? fmtDuration(op.timeout_s) : "–"),
      kv("Created", fmtTimePrecise(op.created_at)),
      kv(op.status === "retrying" || op.status === "scheduled" ? "Next run" : "Run at", fmtTimePrecise(op.run_at)),
      kv("Latest attempt started", fmtTimePrecise(op.started_at), "started"),
      kv("Latest attempt finished", fmtTimePrecise(op.finished_at), "finished"),
      kv("Duration", fmtDuration(duration)),
      kv("Worker", op.worker_id ?? "–", "mono")),
    h("div", { class: "op-body" },
      h("div", {}, h("h4", {}, "Arguments"), codeBlock(json(op.args), "args")),
      op.status === "succeeded" || op.result !== null
        ? h("div", {}, h("h4", {}, "Result"), codeBlock(json(op.result), "result")) : null,
      op.error ? h("div", { class: "error-box full" },
        h("h4", {}, "Error"),
        h("p", { class: "error-line" }, h("strong", {}, op.error.type), `: ${op.error.message}`),
        details) : null));
}

const MAX_CARDS = 100;

function durationOf(op) {
  if (op.started_at && op.finished_at) return op.finished_at - op.started_at;
  if (op.started_at && op.status === "running") return Date.now() / 1000 - op.started_at;
  return null;
}

function outcome(op) {
  if (op.error) return h("span", { class: "error-inline", title: op.error.message }, `${op.error.type}: ${op.error.message}`);
  if (op.status === "succeeded") {
    const text = JSON.stringify(op.result);
    return h("span", { class: "result-inline", title: text }, text);
  }
  return h("span", { class: "muted" }, "–");
}

/** One line per operation, linking to its card below. */
function summary(ops) {
  return h("section", { class: "card op-summary" },
    h("div", { class: "card-head" }, h("h2", {}, `Operations (${ops.length})`)),
    h("div", { class: "table-wrap" }, stackTable(h("table", { class: "table", id: "ops-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Task"), h("th", {}, "Status"), h("th", { class: "num" }, "Attempts"),
        h("th", {}, "Started"), h("th", {}, "Finished"), h("th", { class: "num" }, "Duration"), h("th", {}, "Result / error"))),
      h("tbody", {}, ops.map((op, i) => h("tr", { dataset: { opId: op.id } },
        h("td", {}, i < MAX_CARDS ? h("a", { href: `#op-${op.id}`, class: "task-name", onclick: (ev) => {
          ev.preventDefault();
          document.getElementById(`op-${op.id}`)?.scrollIntoView({ behavior: "smooth", block: "start" });
        } }, op.task) : op.task, h("div", { class: "mono muted small" }, shortId(op.id))),
        h("td", {}, badge(op.status)),
        h("td", { class: "num" }, `${op.attempts} / ${op.max_attempts}`),
        h("td", {}, fmtTimePrecise(op.started_at)),
        h("td", {}, fmtTimePrecise(op.finished_at)),
        h("td", { class: "num" }, fmtDuration(durationOf(op))),
        h("td", {}, outcome(op)))))))));
}

export function mount(root, { params }) {
  const id = params[0];
  const head = h("div", { class: "page-head job-head" });
  const meta = h("section", { class: "card" });
  const ops = h("section", { class: "ops" });
  const openTracebacks = new Set();
  let lastSig = "";
  root.append(h("a", { href: "#/jobs", class: "link back" }, "← Jobs"), head, meta, ops);
  fill(head, h("h1", {}, "Job ", h("span", { class: "mono" }, id)));

  async function refresh() {
    let job;
    try {
      job = await api.get(`/v1/jobs/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err.status === 404) {
        lastSig = "";
        fill(meta, empty(`No job ${id} (or not visible with this key).`));
        ops.replaceChildren();
        return;
      }
      throw err;
    }
    const sig = JSON.stringify(job) + (job.operations.some((o) => o.status === "running") ? Date.now() : "");
    if (sig === lastSig) return;
    lastSig = sig;
    const counts = {};
    for (const op of job.operations) counts[op.status] = (counts[op.status] || 0) + 1;
    fill(head, h("h1", {}, "Job ", h("span", { class: "mono job-id" }, job.id)), badge(job.status, "job-status"));
    fill(meta, h("dl", { class: "kv wide" },
      kv("Queue", job.queue),
      kv("Created", `${fmtTime(job.created_at)} (${fmtAgo(job.created_at)})`),
      kv("Operations", Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ")),
      kv("Idempotency key", job.idempotency_key ?? "–", "mono"),
      Object.keys(job.metadata || {}).length ? kv("Metadata", codeBlock(json(job.metadata))) : null,
      job.operations.some((o) => o.status === "dead")
        ? kv("Dead letters", h("a", { href: `#/dlq?job_id=${job.id}`, class: "link" }, "Replay from the dead-letter queue →")) : null));
    const shown = job.operations.slice(0, MAX_CARDS);
    fill(ops,
      job.operations.length > 1 ? summary(job.operations) : null,
      h("p", { class: "muted small ops-note" }, "Times are those of each operation's latest attempt (only the latest attempt's start and finish are stored)." +
        (job.operations.length > MAX_CARDS ? ` Details below for the first ${MAX_CARDS} operations.` : "")),
      shown.map((op) => operation(op, openTracebacks)));
  }

  return { refresh };
}
