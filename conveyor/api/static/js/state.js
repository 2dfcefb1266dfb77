// What the dashboard remembers between polls: the latest stats and a rolling window of
// samples for the overview charts (kept in memory only, lost on reload).

export const WINDOW_S = 10 * 60;

export const state = {
  stats: null,        // last GET /v1/stats answer
  statsAt: 0,         // when it arrived (Unix seconds)
  samples: [],        // [{t, throughput, failureRate, perQueue: {q: throughput}}]
};

function sum(queues, fn) {
  return queues.reduce((acc, q) => acc + fn(q), 0);
}

export function recordStats(stats) {
  const t = Date.now() / 1000;
  state.stats = stats;
  state.statsAt = t;
  const qs = stats.queues || [];
  const finished5m = sum(qs, (q) => q.throughput_5m_per_s * 300);
  const failed5m = sum(qs, (q) => q.failed_last_5m);
  state.samples.push({
    t,
    throughput: sum(qs, (q) => q.throughput_1m_per_s),
    // share of the operations finished in the last 5 minutes that ended dead
    failureRate: finished5m > 0 ? Math.min(1, failed5m / finished5m) : 0,
    failuresPerMin: failed5m / 5,
  });
  const cutoff = t - WINDOW_S - 10;
  while (state.samples.length && state.samples[0].t < cutoff) state.samples.shift();
}

export function queueNames() {
  return (state.stats?.queues || []).map((q) => q.queue);
}

export function totalCount(status) {
  return sum(state.stats?.queues || [], (q) => q.counts[status] || 0);
}
