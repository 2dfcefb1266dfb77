"""The workloads B1, B2, B2b, B3 (and B3H, B3 at half of B2) and B4, each bounded in
time and in count.

Each workload starts its target (a fresh database for a tier the benchmark runs itself),
measures, stops it, and returns a JSON-ready dict. Throughput of drain workloads comes
from the store's own timestamps (first ``started_at`` to last ``finished_at``); latencies
of HTTP requests from the generator's clock; CPU from the :class:`~.procstat.Sampler`
over the measured window.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import Config
from .context import NOOP, TERMINAL, TRANSIENT, Bench, Deadline, cpu_report, progress_ticker
from .control import (
    done_count,
    fetch_operations,
    queue_counts,
    settle,
    submit_batches,
    wait_finished,
    wait_published,
)
from .http import HttpPool, LoadError, job_id_of
from .log_stages import publish_times, split
from .stats import rate, summarize_ms

WARMUP_JOBS = 20
"""Jobs B2, B2b and B3 run to completion before they measure: the processes they start are
past their own start-up (imports, the process pool, a consumer group's assignment)."""


# --- B1 and B4: drain -----------------------------------------------------------------

ALL_TIMESTAMPS_UP_TO = 5000
"""A drain of at most this many operations is timed from every operation's timestamps;
a larger one from its first and last submitted ones (exact when they run in submission
order; a partitioned log does not keep that order across partitions)."""


async def drain(bench: Bench, name: str, title: str, op: dict[str, Any], n: int,
                *, pool_time: bool = False) -> dict[str, Any]:
    """Load ``n`` operations (workers held back when the target allows), start the
    workers, and time the drain from the operations' own timestamps. With ``pool_time``, say
    where the pool processes' time went in that window (on a core, waiting for one,
    idle)."""
    o = bench.options
    target = bench.target
    deadline = Deadline(o.deadline_s)
    paused = target.can_pause
    await bench.start(workers=not paused)
    pool = HttpPool(target.url, connections=max(o.load_connections, 16), timeout_s=60)
    try:
        before = await queue_counts(pool)
        baseline = done_count(before)
        load_started = time.time()
        ids = await submit_batches(bench, pool, op, n, o.load_batch, o.load_connections,
                                   deadline, f"{title}: load")
        load_ended = time.time()
        published = await wait_published(bench, pool, deadline, f"{title}: publish") \
            if paused else None
        resumed = time.time()
        if paused:
            await bench.start_workers()
        observed, after = await wait_finished(bench, pool, ids,
                                              baseline + len(ids), baseline, deadline,
                                              f"{title}: drain")
        k_last = min(len(ids), max(400, 4 * (target.concurrency or Config().concurrency)))
        edge = (ids if len(ids) <= ALL_TIMESTAMPS_UP_TO
                else list(dict.fromkeys(ids[:50] + ids[-k_last:])))
        ops = await fetch_operations(pool, edge, deadline)
    finally:
        await pool.close()
        await asyncio.to_thread(target.stop)
    starts = [x["started_at"] for x in ops if x.get("started_at")]
    finishes = [x["finished_at"] for x in ops if x.get("finished_at")]
    first_start = min(starts) if starts else resumed
    last_finish = max(finishes) if finishes else observed
    duration = max(last_finish - first_start, 1e-9)
    result: dict[str, Any] = {
        "workload": name, "title": title, "task": op["task"], "args": op["args"],
        "mode": "paused" if paused else "live",
        "ops": len(ids),
        "outcomes": {s: after[s] - before[s] for s in TERMINAL if after[s] - before[s]},
        "load": {"duration_s": round(load_ended - load_started, 3),
                 "ops_per_s": rate(len(ids), load_ended - load_started),
                 "batch": o.load_batch, "connections": o.load_connections,
                 "workers": "not running" if paused else "running",
                 "published_s": (round(published - load_started, 3)
                                 if published is not None else None),
                 "cpu": cpu_report(bench.sampler, load_started, load_ended, len(ids))},
        "duration_s": round(duration, 3),
        "ops_per_s": rate(len(ids), duration),
        "wall_s": round(observed - resumed, 3),
        "wall_ops_per_s": rate(len(ids), observed - resumed),
        "cpu": cpu_report(bench.sampler, first_start, last_finish, len(ids)),
        "rss_mib": bench.sampler.rss_window(first_start, observed),
    }
    if pool_time:
        used = bench.sampler.pool_window(first_start, last_finish)
        result["pool"] = used.to_json() if used is not None else None
    return result


async def b1(bench: Bench) -> dict[str, Any]:
    return await drain(bench, "b1", "B1 drain", NOOP, bench.options.b1_ops)


async def b4(bench: Bench) -> dict[str, Any]:
    o = bench.options
    op = {"task": "sys.cpu", "args": {"ms": o.b4_ms}}
    result = await drain(bench, "b4", "B4 cpu", op, o.b4_ops, pool_time=True)
    ideal = bench.target.processes / (o.b4_ms / 1000.0)
    result["ideal_ops_per_s"] = round(ideal, 1)
    result["processes"] = bench.target.processes
    result["efficiency"] = round((result["ops_per_s"] or 0.0) / ideal, 3)
    return result


# --- B2: closed loop ------------------------------------------------------------------

async def closed_loop(bench: Bench, pool: HttpPool, raw: bytes, connections: int,
                      duration_s: float, warmup_s: float, max_requests: int,
                      deadline: Deadline, label: str) -> dict[str, Any]:
    """``connections`` submitters, each sending its next request when the last answered.
    Requests sent during the warm-up are not counted."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    started = time.perf_counter()
    measure_from = started + warmup_s
    stop_at = min(measure_from + duration_s, started + deadline.left())
    counted = 0
    last_done = measure_from
    phase = bench.reporter.phase(label, max_requests or duration_s + warmup_s)

    async def worker() -> None:
        nonlocal counted, last_done
        while True:
            sent = time.perf_counter()
            if sent >= stop_at or (max_requests and counted >= max_requests):
                return
            measuring = sent >= measure_from
            if measuring:
                counted += 1
            try:
                status, _ = await pool.send(raw)
            except TRANSIENT as exc:
                if measuring:
                    errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)
                continue
            done = time.perf_counter()
            if measuring:
                statuses[status] += 1
                last_done = max(last_done, done)
                if 200 <= status < 300:
                    latencies.append(done - sent)

    ticker = asyncio.create_task(progress_ticker(
        phase, (lambda: counted) if max_requests else (lambda: time.perf_counter() - started)))
    wall_start = time.time() + (measure_from - time.perf_counter())
    try:
        await asyncio.gather(*(worker() for _ in range(connections)))
    finally:
        ticker.cancel()
        phase.done()
    measured_s = max(last_done - measure_from, 1e-9)
    wall_end = wall_start + measured_s
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return {
        "connections": connections, "requests": counted, "ok": ok,
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "errors": dict(errors), "duration_s": round(measured_s, 3),
        "throughput_per_s": rate(ok, measured_s),
        "latency_ms": summarize_ms(latencies),
        "cpu": cpu_report(bench.sampler, wall_start, wall_end, ok),
        "window": (wall_start, wall_end),
    }


async def warm_up(bench: Bench, deadline: Deadline, label: str) -> None:
    """Run :data:`WARMUP_JOBS` jobs to completion, one request after another: the whole
    path (API, transport, worker, its process pool, a consumer group's first assignment)
    has run before anything is measured, so start-up is reported neither as latency nor
    as a share of a throughput window's CPU."""
    pool = HttpPool(bench.target.url, connections=1, timeout_s=60)
    try:
        raw = pool.encode("POST", "/v1/jobs", json.dumps(NOOP, separators=(",", ":")).encode())
        before = await queue_counts(pool)
        ids: list[str] = []
        for _ in range(WARMUP_JOBS):
            status, body = await pool.send(raw)
            job_id = job_id_of(body) if 200 <= status < 300 else None
            if job_id is not None:
                ids.append(job_id)
        await wait_finished(bench, pool, ids, done_count(before) + len(ids),
                            done_count(before), deadline, label)
    finally:
        await pool.close()


async def b2(bench: Bench) -> dict[str, Any]:
    """After :func:`warm_up`, the closed loop at ``b2_connections`` submitters, then at
    each count of the sweep (the workers finish what each point submitted before the
    next). With a sweep, the result is its point with the highest throughput whose p95
    stays under the bound (the one with the lowest p95 if none does), and ``sweep``
    lists every point."""
    o = bench.options
    deadline = Deadline(o.deadline_s)
    counts = list(dict.fromkeys((o.b2_connections, *o.b2_sweep)))
    body = json.dumps(NOOP, separators=(",", ":")).encode()
    await bench.start()
    points = []
    try:
        await warm_up(bench, deadline, "B2: warm-up")
        for connections in counts:
            pool = HttpPool(bench.target.url, connections=connections, timeout_s=60)
            try:
                points.append(await closed_loop(
                    bench, pool, pool.encode("POST", "/v1/jobs", body), connections,
                    o.b2_duration_s, o.b2_warmup_s, o.b2_requests, deadline,
                    f"B2 closed loop, {connections} connections"))
                await settle(bench, pool, deadline, "B2: workers finishing")
            finally:
                await pool.close()
    finally:
        await asyncio.to_thread(bench.target.stop)
    result = best_point(points, o.b2_p95_bound_ms)
    start, end = result.pop("window")
    sweep = {"sweep": [_point(p) for p in points],
             "p95_bound_ms": o.b2_p95_bound_ms} if len(points) > 1 else {}
    return {"workload": "b2", "title": "B2 closed loop", "task": "sys.noop",
            "warmup_jobs": WARMUP_JOBS, **result,
            **sweep, "rss_mib": bench.sampler.rss_window(start, end)}


def best_point(points: list[dict[str, Any]], p95_bound_ms: float) -> dict[str, Any]:
    """The point with the highest throughput among those whose p95 is under
    ``p95_bound_ms``; if none is, the one with the lowest p95."""
    within = [p for p in points
              if p["latency_ms"].get("p95") is not None
              and p["latency_ms"]["p95"] < p95_bound_ms]
    if within:
        return dict(max(within, key=lambda p: p["throughput_per_s"] or 0.0))
    return dict(min(points, key=lambda p: p["latency_ms"].get("p95") or math.inf))


def _point(result: dict[str, Any]) -> dict[str, Any]:
    lat = result["latency_ms"]
    return {"connections": result["connections"],
            "throughput_per_s": result["throughput_per_s"],
            "p50_ms": lat.get("p50"), "p95_ms": lat.get("p95"), "p99_ms": lat.get("p99"),
            "cpu": result["cpu"]}


# --- B2b: batch ingest ----------------------------------------------------------------

async def b2b(bench: Bench) -> dict[str, Any]:
    o = bench.options
    deadline = Deadline(o.deadline_s)
    await bench.start()
    pool = HttpPool(bench.target.url, connections=max(o.b2b_connections, 4), timeout_s=120)
    latencies: list[float] = []
    try:
        await warm_up(bench, deadline, "B2b: warm-up")
        started = time.time()
        ids = await submit_batches(bench, pool, NOOP, o.b2b_ops, o.b2b_batch,
                                   o.b2b_connections, deadline, "B2b batch ingest", latencies)
        ended = time.time()
        await settle(bench, pool, deadline, "B2b: workers finishing")
    finally:
        await pool.close()
        await asyncio.to_thread(bench.target.stop)
    return {
        "workload": "b2b", "title": "B2b batch ingest", "task": "sys.noop",
        "warmup_jobs": WARMUP_JOBS,
        "ops": len(ids), "batch": o.b2b_batch, "connections": o.b2b_connections,
        "workers": "running", "duration_s": round(ended - started, 3),
        "ops_per_s": rate(len(ids), ended - started),
        "batch_latency_ms": summarize_ms(latencies),
        "cpu": cpu_report(bench.sampler, started, ended, len(ids)),
        "rss_mib": bench.sampler.rss_window(started, ended),
    }


# --- B3: open loop --------------------------------------------------------------------

TICK_S = 0.001
"""The open loop's shortest sleep. uvloop rounds a timer to whole milliseconds, so a sleep
under half of one returns at once: a generator sleeping until each next arrival spun a
core at 2,000 arrivals/s (on a 2-core machine, one taken from the system measured).
Arrivals that fall due within a tick leave together when it ends; their latency still
counts from their scheduled times."""


async def open_loop(bench: Bench, pool: HttpPool, raw: bytes, rate_per_s: float,
                    duration_s: float, deadline: Deadline, label: str) -> dict[str, Any]:
    """Requests at fixed scheduled times (``rate_per_s``), each on its own task, sent
    within about :data:`TICK_S` of it; latency counts from the scheduled time, so a
    stalled server cannot hide its stall by slowing the generator down (no coordinated
    omission)."""
    n = max(1, int(rate_per_s * duration_s))
    latencies: list[float] = [math.nan] * n
    lags: list[float] = [math.nan] * n
    ids: list[str | None] = [None] * n
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    inflight: set[asyncio.Task[None]] = set()
    sent = 0
    phase = bench.reporter.phase(label, n)

    async def one(i: int, scheduled: float) -> None:
        lags[i] = time.perf_counter() - scheduled
        try:
            status, body = await pool.send(raw)
        except TRANSIENT as exc:
            errors[type(exc).__name__] += 1
            return
        statuses[status] += 1
        if 200 <= status < 300:
            latencies[i] = time.perf_counter() - scheduled
            ids[i] = job_id_of(body)

    ticker = asyncio.create_task(progress_ticker(phase, lambda: sent))
    begin = time.perf_counter() + 0.05
    wall_start = time.time() + 0.05
    interval = 1.0 / rate_per_s
    try:
        i = 0
        while i < n:
            now = time.perf_counter()
            if now - begin > deadline.left():
                break
            while i < n and begin + i * interval <= now:
                task = asyncio.create_task(one(i, begin + i * interval))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                i += 1
            sent = i
            if i < n:
                await asyncio.sleep(max(TICK_S, begin + i * interval - time.perf_counter()))
        if inflight:
            await asyncio.wait(list(inflight), timeout=max(1.0, deadline.left()))
    finally:
        ticker.cancel()
        phase.done()
    wall_end = time.time()
    ok = sum(c for s, c in statuses.items() if 200 <= s < 300)
    return {
        "requests": sent, "ok": ok, "statuses": {str(s): c for s, c in sorted(statuses.items())},
        "errors": dict(errors), "duration_s": round(wall_end - wall_start, 3),
        "submit_latency_ms": summarize_ms(latencies),
        "generator_lag_ms": summarize_ms(lags),
        "ids": [x for x in ids if x], "window": (wall_start, wall_end),
    }


HALF_OF_B2 = 0.5
"""B3H's share of B2's throughput: the targets' "half of B2's maximum rate"."""


def share_of_b2(bench: Bench, fraction: float) -> float:
    """Arrivals per second at ``fraction`` of the B2 run before it in the same bench."""
    b2_per_s = bench.results.get("b2", {}).get("throughput_per_s")
    if not isinstance(b2_per_s, (int, float)) or b2_per_s <= 0:
        raise LoadError("this open loop runs at a share of B2's throughput, and B2 "
                        "measured none")
    return max(1.0, round(b2_per_s * fraction, 1))


def b3_rate_per_s(bench: Bench) -> float:
    """B3's arrivals per second: the fixed rate, or its share of the B2 run before it."""
    o = bench.options
    if o.b3_rate_of_b2 is None:
        return o.b3_rate_per_s
    return share_of_b2(bench, o.b3_rate_of_b2)


async def b3(bench: Bench) -> dict[str, Any]:
    """B3: the open loop at ``--rate`` (a fixed rate, the same for every system compared,
    or a share of B2's)."""
    return await open_loop_workload(bench, "b3", "B3 open loop", b3_rate_per_s(bench))


async def b3h(bench: Bench) -> dict[str, Any]:
    """B3H: the same open loop at half of the B2 run before it, the rate the latency
    targets name, beside a B3 at a fixed rate in the same bench."""
    return await open_loop_workload(bench, "b3h", "B3 at half of B2",
                                    share_of_b2(bench, HALF_OF_B2))


async def open_loop_workload(bench: Bench, name: str, title: str, rate_per_s: float
                             ) -> dict[str, Any]:
    """Arrivals at ``rate_per_s`` for ``b3_duration_s``, after a warm-up; the waits to
    start and to finish from a sample of the operations' own timestamps."""
    o = bench.options
    deadline = Deadline(o.deadline_s)
    await bench.start()
    pool = HttpPool(bench.target.url, connections=o.b3_connections, timeout_s=60)
    try:
        body = json.dumps(NOOP, separators=(",", ":")).encode()
        await warm_up(bench, deadline, "B3: warm-up")
        before = await queue_counts(pool)
        result = await open_loop(bench, pool, pool.encode("POST", "/v1/jobs", body),
                                 rate_per_s, o.b3_duration_s, deadline, "B3 open loop")
        ids: list[str] = result.pop("ids")
        start, end = result.pop("window")
        await wait_finished(bench, pool, ids, done_count(before) + len(ids),
                            done_count(before), deadline, "B3: finishing")
        step = max(1, len(ids) // max(1, o.b3_sample))
        sample = ids[::step]
        ops = await fetch_operations(pool, sample, deadline, concurrency=32)
    finally:
        await pool.close()
        await asyncio.to_thread(bench.target.stop)
    to_start = [x["started_at"] - x["created_at"] for x in ops if x.get("started_at")]
    to_finish = [x["finished_at"] - x["created_at"] for x in ops if x.get("finished_at")]
    lag = result["generator_lag_ms"]
    log = bench.target.log_of(str(ops[0].get("queue", "default"))) if ops else None
    stages = None
    if log is not None:
        try:
            published = await asyncio.to_thread(publish_times, *log, start - 1.0,
                                                {str(x.get("id")) for x in ops})
            stages = split(ops, published)
        except Exception as exc:  # the split is an extra; B3's own figures stand
            bench.reporter.note(f"B3: the log could not be read back ({exc})")
    return {
        "workload": name, "title": title, "task": "sys.noop",
        "rate_per_s": rate_per_s, "achieved_per_s": rate(result["ok"], o.b3_duration_s),
        "warmup_jobs": WARMUP_JOBS,
        **result,
        "sampled_ops": len(ops),
        "enqueue_to_start_ms": summarize_ms(to_start),
        "enqueue_to_finish_ms": summarize_ms(to_finish),
        **({"enqueue_to_start_parts_ms": stages} if stages is not None else {}),
        "generator_saturated": bool(lag.get("p99") and lag["p99"] > 10.0),
        "cpu": cpu_report(bench.sampler, start, end, result["ok"]),
        "rss_mib": bench.sampler.rss_window(start, end),
    }


WORKLOADS: dict[str, Callable[[Bench], Awaitable[dict[str, Any]]]] = {
    "b1": b1, "b2": b2, "b2b": b2b, "b3": b3, "b4": b4,
}
"""The benchmark plan's workloads, what ``--workloads all`` runs."""
AFTER_B2: dict[str, Callable[[Bench], Awaitable[dict[str, Any]]]] = {"b3h": b3h}
"""Workloads that follow a B2 of the same bench (named, never part of ``all``)."""
