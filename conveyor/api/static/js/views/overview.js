// Overview: totals, live throughput and failure-rate charts, every queue's counts, workers.

import * as api from "../api.js";
import { drawChart } from "../chart.js";
import { state, WINDOW_S } from "../state.js";
import { h, fill, stackTable, fmtDuration, fmtNum, fmtPercent, fmtRate, empty } from "../util.js";

const STATES = ["scheduled", "queued", "running", "retrying", "succeeded", "dead", "cancelled"];

function stat(label, valueEl, hint) {
  return h("div", { class: "stat" },
    h("div", { class: "stat-label" }, label), valueEl, hint ? h("div", { class: "stat-hint" }, hint) : null);
}

export function mount(root) {
  const v = {
    ready: h("div", { class: "stat-value" }, "–"),
    running: h("div", { class: "stat-value" }, "–"),
    throughput: h("div", { class: "stat-value" }, "–"),
    failure: h("div", { class: "stat-value" }, "–"),
    dead: h("div", { class: "stat-value" }, "–"),
    workers: h("div", { class: "stat-value" }, "–"),
  };
  const tpChart = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  tpChart.setAttribute("class", "chart");
  tpChart.setAttribute("role", "img");
  tpChart.setAttribute("aria-label", "Throughput over the last 10 minutes");
  const frChart = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  frChart.setAttribute("class", "chart");
  frChart.setAttribute("role", "img");
  frChart.setAttribute("aria-label", "Failure rate over the last 10 minutes");
  const tpNow = h("span", { class: "chart-now tp" });
  const frNow = h("span", { class: "chart-now fr" });
  const queues = h("div", { class: "table-wrap" });
  const workersBox = h("div", { class: "table-wrap" });

  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Overview"),
      h("p", { class: "muted" }, "Every queue of this key's tenant, refreshed every 2 seconds.")),
    h("section", { class: "stats", "aria-label": "Totals" },
      stat("Ready", v.ready, "queued, scheduled, retrying"),
      stat("Running", v.running),
      stat("Throughput", v.throughput, "finished, 1-minute average"),
      stat("Failure rate", v.failure, "dead / finished, last 5 min"),
      stat("Dead letters", v.dead),
      stat("Live workers", v.workers)),
    h("section", { class: "charts" },
      h("div", { class: "card" },
        h("div", { class: "card-head" }, h("h2", {}, "Throughput"), tpNow),
        h("div", { class: "chart-box" }, tpChart),
        h("div", { class: "legend" }, h("span", { class: "key tp" }), "operations finished per second (1-min average), last 10 min")),
      h("div", { class: "card" },
        h("div", { class: "card-head" }, h("h2", {}, "Failure rate"), frNow),
        h("div", { class: "chart-box" }, frChart),
        h("div", { class: "legend" }, h("span", { class: "key fr" }), "share of finished operations that went dead (5-min window)"))),
    h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Queues")), queues),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Live workers"), h("a", { href: "#/workers", class: "link" }, "All workers →")),
      workersBox),
  );

  function drawCharts() {
    const now = Date.now() / 1000;
    drawChart(tpChart, [{ cls: "tp", points: state.samples.map((s) => [s.t, s.throughput]) }],
      { windowS: WINDOW_S, now, format: (x) => (x === 0 ? "0" : fmtNum(x, x < 1 ? 2 : x < 10 ? 1 : 0)), minMax: 0.1 });
    drawChart(frChart, [{ cls: "fr", points: state.samples.map((s) => [s.t, s.failureRate * 100]) }],
      { windowS: WINDOW_S, now, format: (x) => `${fmtNum(x, x < 10 && x > 0 ? 1 : 0)}%`, minMax: 5, cap: 100 });
  }

  const onResize = () => drawCharts();
  window.addEventListener("resize", onResize);

  // Kafka tier: consumer lag (messages not yet consumed) and outbox rows not yet published.
  function lagCell(transport, queue) {
    if (transport.lag_error) return h("span", { class: "muted", title: transport.lag_error }, "?");
    const lag = transport.queues?.[queue]?.lag || 0;
    const outbox = transport.outbox_backlog?.[queue] || 0;
    return h("span", { class: lag > 0 ? "count s-queued" : "count zero",
      title: `${fmtNum(outbox)} outbox rows not yet published` }, fmtNum(lag));
  }

  function renderQueues(qs) {
    const transport = state.stats?.transport;
    const showLag = transport && transport.kind === "kafka";
    if (qs.length === 0) {
      fill(queues, empty("No queue has any operation yet. Submit a job to see it here."));
      return;
    }
    fill(queues, h("table", { class: "table", id: "queues-table" },
      h("thead", {}, h("tr", {},
        h("th", {}, "Queue"),
        STATES.map((s) => h("th", { class: "num" }, s)),
        h("th", { class: "num" }, "Throughput"),
        h("th", { class: "num" }, "Failed 5 min"),
        h("th", { class: "num" }, "Oldest ready"),
        showLag ? h("th", { class: "num" }, "Lag") : null)),
      h("tbody", {}, qs.map((q) => h("tr", { dataset: { queue: q.queue } },
        h("td", {}, h("a", { href: `#/jobs?queue=${encodeURIComponent(q.queue)}`, class: "queue-name" }, q.queue)),
        STATES.map((s) => {
          const n = q.counts[s] || 0;
          const cell = s === "dead" && n > 0
            ? h("a", { href: `#/dlq?queue=${encodeURIComponent(q.queue)}`, class: "count s-dead" }, fmtNum(n))
            : h("span", { class: n > 0 ? `count s-${s}` : "count zero" }, fmtNum(n));
          return h("td", { class: "num" }, cell);
        }),
        h("td", { class: "num" }, fmtRate(q.throughput_1m_per_s)),
        h("td", { class: "num" }, h("span", { class: q.failed_last_5m ? "count s-dead" : "count zero" }, fmtNum(q.failed_last_5m)),
          q.failed_last_5m ? h("span", { class: "muted small" }, ` (${fmtPercent(q.failed_last_5m / Math.max(1, q.throughput_5m_per_s * 300))})`) : null),
        h("td", { class: "num" }, q.oldest_ready_age_s == null ? "–" : fmtDuration(q.oldest_ready_age_s)),
        showLag ? h("td", { class: "num lag" }, lagCell(transport, q.queue)) : null,
      )))));
    stackTable(queues.querySelector("table"));
  }

  function renderWorkers(list) {
    const live = list.filter((w) => w.status === "live");
    fill(v.workers, fmtNum(live.length));
    if (live.length === 0) {
      fill(workersBox, empty("No live worker: nothing will run until one starts."));
      return;
    }
    fill(workersBox, h("table", { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Worker"), h("th", {}, "Queues"),
        h("th", { class: "num" }, "In flight"), h("th", { class: "num" }, "Processed"))),
      h("tbody", {}, live.map((w) => h("tr", {},
        h("td", {}, h("span", { class: "mono" }, `${w.host}:${w.pid}`), w.drift ? h("span", { class: "badge s-dead" }, "drift") : null),
        h("td", {}, w.queues.join(", ")),
        h("td", { class: "num" }, `${fmtNum(w.in_flight)} / ${fmtNum(w.concurrency)}`),
        h("td", { class: "num" }, fmtNum(w.processed)))))));
    stackTable(workersBox.querySelector("table"));
  }

  async function refresh() {
    const qs = state.stats?.queues || [];
    const total = (s) => qs.reduce((a, q) => a + (q.counts[s] || 0), 0);
    fill(v.ready, fmtNum(total("queued") + total("scheduled") + total("retrying")));
    fill(v.running, fmtNum(total("running")));
    const last = state.samples[state.samples.length - 1];
    fill(v.throughput, fmtRate(last?.throughput || 0));
    fill(v.failure, fmtPercent(last?.failureRate || 0));
    fill(v.dead, fmtNum(total("dead")));
    v.dead.classList.toggle("bad", total("dead") > 0);
    v.failure.classList.toggle("bad", (last?.failureRate || 0) > 0);
    fill(tpNow, fmtRate(last?.throughput || 0));
    fill(frNow, fmtPercent(last?.failureRate || 0));
    renderQueues(qs);
    drawCharts();
    const { workers } = await api.get("/v1/workers");
    renderWorkers(workers);
  }

  return { refresh, unmount: () => window.removeEventListener("resize", onResize) };
}
