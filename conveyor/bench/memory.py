"""B5 memory: does a worker's resident memory stay flat over a long stream of operations?

The workers run while no-op operations are submitted in batches, the backlog kept below a
bound (so the store holds a bounded amount of ready work and only the worker's own growth
shows). At every progress poll the workload records the operations finished so far and
the resident set of the worker's main process (the process that claims, runs async tasks
and records outcomes; pool children are reported separately as the tree's figure).

Flat means: after the warm-up (the first ``warmup_fraction`` of the operations), the
largest RSS stays within ``flat_pct`` percent of the RSS measured when the warm-up ended.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from .context import NOOP, TERMINAL, TRANSIENT, Bench, Deadline, cpu_report
from .control import done_count, queue_counts
from .http import HttpPool, LoadError
from .procstat import read_proc, sample_group
from .stats import rate

MIB = 2**20


def _worker_roots(bench: Bench) -> list[int]:
    groups = bench.target.groups()
    for name in ("worker", "server"):
        if name in groups:
            roots = groups[name]()
            if roots:
                return roots
    return []


def _rss_mib(roots: list[int]) -> tuple[float | None, float | None]:
    """RSS of the first root process alone and of its whole tree (MiB)."""
    if not roots:
        return None, None
    own = read_proc(roots[0])
    tree = sample_group(roots)
    return (own.rss_bytes / MIB if own else None,
            tree.rss_bytes / MIB if tree.processes else None)


def flatness(samples: list[tuple[int, float]], total: int, warmup_fraction: float
             ) -> dict[str, Any]:
    """Growth of RSS after the warm-up: ``samples`` are (operations done, RSS MiB)."""
    warm_at = int(total * warmup_fraction)
    after = [(n, r) for n, r in samples if n >= warm_at]
    if len(after) < 2:
        return {"warmup_ops": warm_at, "samples_after_warmup": len(after)}
    warm = after[0][1]
    peak = max(r for _, r in after)
    end = after[-1][1]
    return {
        "warmup_ops": warm_at, "samples_after_warmup": len(after),
        "warm_mib": round(warm, 1), "max_mib": round(peak, 1), "end_mib": round(end, 1),
        "growth_pct": round((peak - warm) / warm * 100, 2) if warm else None,
        "end_growth_pct": round((end - warm) / warm * 100, 2) if warm else None,
    }


async def b5(bench: Bench) -> dict[str, Any]:
    o = bench.options
    deadline = Deadline(o.deadline_s)
    target = bench.target
    await bench.start()
    pool = HttpPool(target.url, connections=max(o.load_connections, 4), timeout_s=120)
    n = o.mem_ops
    samples: list[tuple[int, float]] = []
    tree_samples: list[tuple[int, float]] = []
    submitted = 0
    done = 0
    phase = bench.reporter.phase("B5 memory", n)
    try:
        baseline = done_count(await queue_counts(pool))
        body = json.dumps({"jobs": [NOOP] * o.load_batch}, separators=(",", ":")).encode()
        raw = pool.encode("POST", "/v1/jobs/batch", body)
        started = time.time()

        async def submitter() -> None:
            nonlocal submitted
            while submitted < n:
                deadline.check("B5 memory: load")
                if submitted - done >= o.mem_backlog:
                    await asyncio.sleep(0.02)
                    continue
                submitted += o.load_batch  # reserved before the await: no overshoot
                try:
                    status, answer = await pool.send(raw)
                except TRANSIENT:
                    submitted -= o.load_batch
                    await asyncio.sleep(0.1)
                    continue
                if status in (429, 503):
                    submitted -= o.load_batch
                    await asyncio.sleep(0.05)
                elif status != 202:
                    raise LoadError(f"POST /v1/jobs/batch answered {status}: {answer[:300]!r}")

        async def watcher() -> None:
            nonlocal done
            while True:
                deadline.check("B5 memory: drain")
                try:
                    done = done_count(await queue_counts(pool)) - baseline
                except TRANSIENT:
                    await asyncio.sleep(0.1)
                    continue
                own, tree = await asyncio.to_thread(_rss_mib, _worker_roots(bench))
                if own is not None:
                    samples.append((done, own))
                if tree is not None:
                    tree_samples.append((done, tree))
                phase.update(done)
                if done >= n:
                    return
                await asyncio.sleep(o.mem_poll_s)

        loaders = [asyncio.create_task(submitter()) for _ in range(max(1, o.load_connections))]
        try:
            await watcher()
        finally:
            for task in loaders:
                task.cancel()
            await asyncio.gather(*loaders, return_exceptions=True)
        ended = time.time()
        after = await queue_counts(pool)
    finally:
        phase.done()
        await pool.close()
        await asyncio.to_thread(target.stop)
    own_flat = flatness(samples, n, o.mem_warmup_fraction)
    growth = own_flat.get("growth_pct")
    step = max(1, len(samples) // 200)
    return {
        "workload": "b5", "title": "B5 memory", "task": "sys.noop", "ops": done,
        "backlog": o.mem_backlog, "duration_s": round(ended - started, 3),
        "ops_per_s": rate(done, ended - started),
        "outcomes": {s: after[s] for s in TERMINAL if after[s]},
        "worker_rss": own_flat,
        "worker_tree_rss": flatness(tree_samples, n, o.mem_warmup_fraction),
        "flat_pct": o.mem_flat_pct,
        "flat": growth is not None and growth <= o.mem_flat_pct,
        "samples": [[d, round(r, 2)] for d, r in samples[::step]],
        "cpu": cpu_report(bench.sampler, started, ended, max(done, 1)),
    }


EXTRA_WORKLOADS = {"b5": b5}
"""Workloads that ``all`` leaves out (long by design): name them with ``--workloads``."""
