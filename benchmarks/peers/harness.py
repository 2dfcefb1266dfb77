"""The measurement side shared by every peer: B1 (drain), B3 (open loop) and B4 (CPU-bound)
with the same shapes and the same report fields as ``conveyor bench``.

A peer adapter (celery_peer, dramatiq_peer, pgqueuer_peer) provides: ``name``,
``durability``, ``setup()``, ``enqueue_many(task, args, n)`` (returns handles in order),
``submit(task, args)`` (one, for the open loop), ``start_workers(processes)`` (returns the
worker Popen objects), ``finished(handles)`` (how many have a stored outcome),
``times(handles)`` (per handle: enqueued, started, finished Unix seconds; None when
unknown), ``service_pids()`` (the broker/database process), and ``close()``.

Run inside the peers' virtual environment:

    python -m benchmarks.peers.harness --system celery --workloads b1,b3,b4 --out r.json
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _load_procstat() -> Any:
    """conveyor/bench/procstat.py by path: it needs only the standard library, and the
    peers' environment does not have Conveyor's dependencies."""
    path = REPO / "conveyor" / "bench" / "procstat.py"
    spec = importlib.util.spec_from_file_location("_bench_procstat", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_bench_procstat"] = module
    spec.loader.exec_module(module)
    return module


procstat = _load_procstat()


def bench_redis_url(url: str) -> str:
    """The benchmark's own Redis database (15) on the given server: peers flush it between
    runs, so they never touch database 0, which tests and demos use."""
    base, _, db = url.rstrip("/").rpartition("/")
    if base.startswith("redis://") and db.isdigit():
        return f"{base}/{db if db != '0' else '15'}"
    return url.rstrip("/") + "/15"


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(values)))
    return values[min(rank, len(values)) - 1]


def summarize_ms(seconds: list[float]) -> dict[str, Any]:
    values = sorted(v for v in seconds if v is not None and not math.isnan(v))
    out: dict[str, Any] = {"count": len(values)}
    for p, key in ((50, "p50"), (95, "p95"), (99, "p99"), (99.9, "p999")):
        v = percentile(values, p)
        out[key] = None if v is None else round(v * 1000, 3)
    out["mean"] = round(sum(values) / len(values) * 1000, 3) if values else None
    out["max"] = round(values[-1] * 1000, 3) if values else None
    return out


def cpu_report(sampler: Any, start: float, end: float, ops: int) -> dict[str, Any]:
    window = max(end - start, 1e-9)
    used = sampler.cpu_window(start, end)
    machine = used.pop(procstat.MACHINE, None)
    out: dict[str, Any] = {name: {"cpu_s": round(v, 3), "cores": round(v / window, 2),
                                  "us_per_op": round(v / ops * 1e6, 1) if ops else None}
                           for name, v in used.items()}
    if machine is not None:
        others = max(0.0, machine - sum(used.values()))
        out["others"] = {"cpu_s": round(others, 3), "cores": round(others / window, 2),
                         "us_per_op": None}
    return out


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.seconds = seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.at:
            raise TimeoutError(f"{what}: not finished within {self.seconds:g} s")


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)  # started in its own session by us
            p.wait(timeout=10)


async def wait_finished(peer: Any, handles: list[Any], deadline: Deadline,
                        workers: list[subprocess.Popen[bytes]] | None = None) -> float:
    """Poll until every handle has a stored outcome; the wall time it was seen. Fails
    early when every worker process has exited."""
    last = handles[-1:]
    while True:
        deadline.check(f"{peer.name}: waiting for outcomes")
        if workers and all(w.poll() is not None for w in workers):
            raise RuntimeError(f"{peer.name}: the workers exited (see /tmp/conveyor-bench-"
                               f"{peer.name}-*.log)")
        if await peer.finished(last) == len(last) and await peer.finished(handles) == len(
                handles):
            return time.time()
        await asyncio.sleep(0.05)


async def drain(peer: Any, sampler: Any, task: str, args: dict[str, Any], n: int,
                processes: int, deadline: Deadline) -> dict[str, Any]:
    await peer.setup()
    load_started = time.time()
    handles = await peer.enqueue_many(task, args, n)
    load_ended = time.time()
    resumed = time.time()
    workers = peer.start_workers(processes)
    sampler.set_group("workers", lambda: [w.pid for w in workers if w.poll() is None])
    try:
        observed = await wait_finished(peer, handles, deadline, workers)
        times = await peer.times(handles)
    finally:
        stop_all(workers)
    starts = [t[1] for t in times if t[1] is not None]
    finishes = [t[2] for t in times if t[2] is not None]
    first, last = (min(starts) if starts else resumed), (max(finishes) if finishes else observed)
    duration = max(last - first, 1e-9)
    return {
        "ops": len(handles), "task": task, "args": args, "mode": "paused",
        "load": {"duration_s": round(load_ended - load_started, 3),
                 "ops_per_s": round(n / max(load_ended - load_started, 1e-9), 1)},
        "duration_s": round(duration, 3), "ops_per_s": round(n / duration, 1),
        "wall_s": round(observed - resumed, 3),
        "wall_ops_per_s": round(n / max(observed - resumed, 1e-9), 1),
        "cpu": cpu_report(sampler, first, last, n),
        "rss_mib": sampler.rss_window(first, observed),
    }


async def open_loop(peer: Any, sampler: Any, rate_per_s: float, duration_s: float,
                    processes: int, deadline: Deadline) -> dict[str, Any]:
    await peer.setup()
    workers = peer.start_workers(processes)
    sampler.set_group("workers", lambda: [w.pid for w in workers if w.poll() is None])
    try:
        # warm-up: the workers are ready once they ran one job
        await wait_finished(peer, [await peer.submit("noop", {})], deadline, workers)
        n = int(rate_per_s * duration_s)
        handles: list[Any] = []
        latencies: list[float] = []
        lags: list[float] = []
        begin = time.perf_counter() + 0.05
        wall_start = time.time() + 0.05
        for i in range(n):
            scheduled = begin + i / rate_per_s
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(time.perf_counter() - scheduled)
            handles.append(await peer.submit("noop", {}))
            latencies.append(time.perf_counter() - scheduled)
            deadline.check(f"{peer.name}: open loop")
        wall_end = time.time()
        await wait_finished(peer, handles, deadline, workers)
        times = await peer.times(handles)
    finally:
        stop_all(workers)
    to_start = [t[1] - t[0] for t in times if t[0] is not None and t[1] is not None]
    to_finish = [t[2] - t[0] for t in times if t[0] is not None and t[2] is not None]
    return {
        "rate_per_s": rate_per_s, "requests": len(handles), "ok": len(handles),
        "duration_s": round(wall_end - wall_start, 3),
        "submit_latency_ms": summarize_ms(latencies), "generator_lag_ms": summarize_ms(lags),
        "enqueue_to_start_ms": summarize_ms(to_start),
        "enqueue_to_finish_ms": summarize_ms(to_finish),
        "cpu": cpu_report(sampler, wall_start, wall_end, len(handles)),
    }


async def run(system: str, workloads: list[str], opts: argparse.Namespace) -> dict[str, Any]:
    module = importlib.import_module(f"benchmarks.peers.{system}_peer")
    peer = module.Peer(opts)
    sampler = procstat.Sampler({"generator": lambda: [os.getpid()],
                                "service": peer.service_pids}, interval_s=0.1).start()
    results: dict[str, Any] = {}
    try:
        for w in workloads:
            deadline = Deadline(opts.deadline)
            try:
                if w == "b1":
                    results[w] = {"workload": "b1", "title": "B1 drain",
                                  **await drain(peer, sampler, "noop", {}, opts.ops,
                                                opts.processes, deadline)}
                elif w == "b3":
                    results[w] = {"workload": "b3", "title": "B3 open loop",
                                  **await open_loop(peer, sampler, opts.rate,
                                                    opts.rate_duration, opts.processes,
                                                    deadline)}
                elif w == "b4":
                    r = await drain(peer, sampler, "cpu", {"ms": opts.cpu_ms}, opts.cpu_ops,
                                    opts.processes, deadline)
                    ideal = opts.processes / (opts.cpu_ms / 1000.0)
                    results[w] = {"workload": "b4", "title": "B4 cpu", **r,
                                  "processes": opts.processes, "ideal_ops_per_s": ideal,
                                  "efficiency": round(r["ops_per_s"] / ideal, 3)}
            except Exception as exc:  # one workload failing must not lose the others
                results[w] = {"workload": w, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        sampler.stop()
        await peer.close()
    return {
        "format": 1, "tool": "benchmarks.peers.harness", "system": system,
        "version": peer.version, "durability": peer.durability,
        "settings": peer.settings, "command": " ".join(sys.argv),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "target": {"tier": system, "durability": peer.durability,
                   "processes": opts.processes},
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", required=True, choices=["celery", "dramatiq", "pgqueuer"])
    parser.add_argument("--workloads", default="b1,b3,b4")
    parser.add_argument("--redis", default=os.environ.get("PEER_REDIS_URL", ""))
    parser.add_argument("--postgres", default=os.environ.get("PEER_POSTGRES_URL", ""))
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--rate-duration", type=float, default=10.0)
    parser.add_argument("--cpu-ops", type=int, default=1000)
    parser.add_argument("--cpu-ms", type=float, default=10.0)
    parser.add_argument("--deadline", type=float, default=300.0)
    parser.add_argument("--out", type=Path)
    opts = parser.parse_args()
    report = asyncio.run(run(opts.system, [w.strip() for w in opts.workloads.split(",")],
                             opts))
    text = json.dumps(report, indent=2)
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
