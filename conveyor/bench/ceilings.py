"""Stage ceilings: how fast each stage of Conveyor's path can go on its own, so a workload's
figure can be read against the limit of the stage that bounds it.

* ``asgi``: bare endpoints (a raw ASGI callable, then a FastAPI route) under uvicorn with
  Conveyor's settings, driven by the same closed-loop generator as B2.
* ``api-memory``: ``conveyor serve --store memory://`` under B2: the API, service and
  worker without the durable store.
* ``parse``: the API's own work on one B2b request, in this process: decode the JSON
  body of ``--batch-size`` ``sys.noop`` jobs as the route does and validate the jobs
  (:meth:`conveyor.service.Service.parse_many`), without HTTP and without the store.
* ``store``: the store adapter called directly in this process: ``insert_jobs`` at
  several jobs per transaction (and many concurrent single-job callers, the group-commit
  path), ``claim`` and ``complete_many`` at several batch sizes, and a claim+complete
  cycle (the store's own drain limit).
* ``pool``: :class:`conveyor.worker.pool.ProcessPool` dispatch of a trivial ``def`` task,
  and its efficiency on 10 ms CPU tasks.
* ``kafka``: the Kafka client and broker on their own (:mod:`.kafka_ceiling`): produce
  at the relay's batch sizes, consume, and one message through the log at a time. Needs
  ``--kafka-bootstrap``; ``all`` includes it only then.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..api.body import parse_json
from ..config import Config, Limits
from ..model import Claim, NewJob, NewOperation, Outcome
from ..service import Service, TaskCatalog
from ..store.base import Store
from ..store.memory import MemoryStore
from ..tasks import Context, Registry
from ..wiring import make_store
from ..worker.pool import ProcessPool
from .context import NOOP, Deadline, Options, Reporter
from .http import HttpPool
from .kafka_ceiling import kafka_ceiling
from .procstat import Sampler
from .stats import rate
from .tiers import Proc, free_port, wait_ready
from .workloads import closed_loop

CEILINGS = ("asgi", "api-memory", "parse", "store", "pool", "kafka")
STAGE_S = 2.0
"""Seconds each store or pool measurement runs (bounded by a count too)."""


def _row(stage: str, value: str, detail: str = "", **figures: Any) -> dict[str, Any]:
    return {"stage": stage, "value": value, "detail": detail, **figures}


# --- HTTP ------------------------------------------------------------------------------

async def _http_ceiling(label: str, cmd: list[str], options: Options, reporter: Reporter,
                        sampler: Sampler, workdir: Path, port: int) -> dict[str, Any]:
    proc = Proc(label, cmd, workdir, dict(os.environ))
    sampler.set_group(label, lambda: [proc.pid] if proc.alive() else [])
    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", [proc])
        pool = HttpPool(f"http://127.0.0.1:{port}", connections=options.b2_connections)
        try:
            body = json.dumps(NOOP, separators=(",", ":")).encode()
            result = await closed_loop(
                _Shim(sampler, reporter), pool, pool.encode("POST", "/v1/jobs", body),  # type: ignore[arg-type]
                options.b2_connections, options.b2_duration_s, options.b2_warmup_s,
                0, Deadline(options.deadline_s), label)
        finally:
            await pool.close()
    finally:
        await asyncio.to_thread(proc.stop)
    result.pop("window")
    result["cpu"] = {k: v for k, v in result["cpu"].items() if k in (label, "generator", "others")}
    return result


class _Shim:
    """The parts of a Bench that closed_loop reads."""

    def __init__(self, sampler: Sampler, reporter: Reporter) -> None:
        self.sampler = sampler
        self.reporter = reporter


async def asgi_ceiling(options: Options, reporter: Reporter, sampler: Sampler,
                       workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("raw", "fastapi"):
        port = free_port()
        out[kind] = await _http_ceiling(
            f"asgi-{kind}", [sys.executable, "-m", "conveyor.bench.bare_asgi", "--port",
                             str(port), "--kind", kind],
            options, reporter, sampler, workdir, port)
    return out


async def api_memory_ceiling(options: Options, reporter: Reporter, sampler: Sampler,
                             workdir: Path, processes: int) -> dict[str, Any]:
    port = free_port()
    return await _http_ceiling(
        "api-memory", [sys.executable, "-m", "conveyor.cli", "serve", "--store", "memory://",
                       "--port", str(port), "--processes", str(processes)],
        options, reporter, sampler, workdir, port)


# --- parse -----------------------------------------------------------------------------

async def parse_ceiling(batch: int, reporter: Reporter, deadline: Deadline
                        ) -> dict[str, Any]:
    """Operations per second of one thread decoding and validating B2b's request bodies
    (what :func:`conveyor.api.submit.submit_batch` does before the store): one core's
    limit for that stage."""
    deadline.check("parse ceiling")
    limits = Limits()
    store = MemoryStore()  # only read for the catalog of tasks: nothing is stored
    service = Service(store, TaskCatalog(store, Registry.load()), limits)
    raw = json.dumps({"jobs": [NOOP] * batch}, separators=(",", ":")).encode()
    phase = reporter.phase("ceiling: parse", 1)

    async def parse_once() -> None:
        body = parse_json(raw, limits.max_json_depth + 2)
        await service.parse_many(body["jobs"])

    try:
        await parse_once()  # the catalog's first read
        cpu_started = time.process_time()
        calls, seconds = await _timed(parse_once, STAGE_S, max(1, 200_000 // batch))
        cpu_s = time.process_time() - cpu_started
        phase.update(1)
    finally:
        phase.done()
    return {"batch": batch, "ops_per_s": rate(calls * batch, seconds),
            "cpu_us_per_op": round(cpu_s / (calls * batch) * 1e6, 2)}


# --- store -----------------------------------------------------------------------------

def _jobs(n: int) -> list[NewJob]:
    return [NewJob(operations=(NewOperation("sys.noop", {}),)) for _ in range(n)]


async def _timed(fn: Callable[[], Any], limit_s: float, max_calls: int) -> tuple[int, float]:
    """Call the coroutine function until ``limit_s`` or ``max_calls``; returns calls and
    seconds."""
    calls = 0
    started = time.perf_counter()
    while calls < max_calls and time.perf_counter() - started < limit_s:
        await fn()
        calls += 1
    return calls, time.perf_counter() - started


async def store_ceiling(store_url: str, reporter: Reporter, deadline: Deadline,
                        sqlite_synchronous: str = "FULL") -> dict[str, Any]:
    config = Config(store=store_url, sqlite_synchronous=sqlite_synchronous)
    store: Store = make_store(config)
    await store.migrate()
    await store.open()
    out: dict[str, Any] = {"store": store_url.split("://")[0],
                           "insert": {}, "claim": {}, "complete": {}}
    phase = reporter.phase("ceiling: store", 4)
    try:
        for size in (1, 10, 100, 1000):
            deadline.check("store ceiling")
            count = max(1, min(20_000 // size, 400))
            batches = [_jobs(size) for _ in range(count)]
            it = iter(batches)
            calls, seconds = await _timed(lambda it=it: store.insert_jobs(next(it)),  # type: ignore[misc]
                                          STAGE_S, count)
            out["insert"][str(size)] = {"ops_per_s": rate(calls * size, seconds),
                                        "txn_per_s": rate(calls, seconds)}
        phase.update(1)
        # many concurrent one-job callers: the path of POST /v1/jobs (group commit)
        callers = 64
        singles = _jobs(callers * 200)
        done = 0
        started = time.perf_counter()

        async def caller(k: int) -> None:
            nonlocal done
            for j in range(k, len(singles), callers):
                if time.perf_counter() - started > STAGE_S:
                    return
                await store.insert_jobs([singles[j]])
                done += 1

        await asyncio.gather(*(caller(k) for k in range(callers)))
        out["insert"]["1 x 64 callers"] = {
            "ops_per_s": rate(done, time.perf_counter() - started)}
        phase.update(2)
        claims: list[Claim] = []
        for size in (1, 10, 100, 256):
            deadline.check("store ceiling")
            got: list[Claim] = []

            async def claim_once(size: int = size, got: list[Claim] = got) -> None:
                got.extend(await store.claim(["default"], "bench", size, 300.0))

            calls, seconds = await _timed(claim_once, STAGE_S / 2, max(1, 10_000 // size))
            out["claim"][str(size)] = {"ops_per_s": rate(len(got), seconds),
                                       "txn_per_s": rate(calls, seconds)}
            claims.extend(got)
        phase.update(3)
        for size in (1, 10, 100, 256):
            deadline.check("store ceiling")
            chunks = [claims[i:i + size] for i in range(0, len(claims), size)][:400]
            if not chunks:
                break
            claims = claims[sum(len(c) for c in chunks):]
            it2 = iter(chunks)
            finished = 0

            async def complete_once(it2: Any = it2) -> None:
                nonlocal finished
                chunk = next(it2)
                await store.complete_many([Outcome.succeeded(c, None) for c in chunk])
                finished += len(chunk)

            calls, seconds = await _timed(complete_once, STAGE_S / 2, len(chunks))
            out["complete"][str(size)] = {"ops_per_s": rate(finished, seconds),
                                          "txn_per_s": rate(calls, seconds)}
        # the store's drain limit: claim 256, complete them, repeat (one worker's loop)
        deadline.check("store ceiling")
        await store.insert_jobs(_jobs(20_000))
        cycled = 0
        started = time.perf_counter()
        while time.perf_counter() - started < STAGE_S * 2:
            batch = await store.claim(["default"], "bench", 256, 300.0)
            if not batch:
                break
            await store.complete_many([Outcome.succeeded(c, None) for c in batch])
            cycled += len(batch)
        out["cycle_256"] = {"ops_per_s": rate(cycled, time.perf_counter() - started)}
        phase.update(4)
    finally:
        phase.done()
        await store.close()
    return out


# --- process pool ----------------------------------------------------------------------

async def pool_ceiling(processes: int, reporter: Reporter, deadline: Deadline
                       ) -> dict[str, Any]:
    pool = ProcessPool(processes)
    await pool.start()
    ctx = Context("bench", "bench", "default", None, 1, 1)
    phase = reporter.phase("ceiling: pool", 2)
    try:
        # warm every child (spawned children import the task modules first)
        await asyncio.gather(*(pool.run("math.add", {"a": 1, "b": 2}, ctx, 60.0)
                               for _ in range(processes * 2)))
        done = 0
        started = time.perf_counter()
        in_flight = processes * 4

        async def dispatcher() -> None:
            nonlocal done
            while time.perf_counter() - started < STAGE_S and deadline.left() > 0:
                await pool.run("math.add", {"a": 1, "b": 2}, ctx, 60.0)
                done += 1

        await asyncio.gather(*(dispatcher() for _ in range(in_flight)))
        dispatch = {"ops_per_s": rate(done, time.perf_counter() - started),
                    "in_flight": in_flight, "task": "math.add"}
        phase.update(1)
        cpu_ops = processes * 100
        started = time.perf_counter()
        await asyncio.gather(*(pool.run("sys.cpu", {"ms": 10.0}, ctx, 60.0)
                               for _ in range(cpu_ops)))
        seconds = time.perf_counter() - started
        ideal = processes / 0.010
        cpu = {"ops_per_s": rate(cpu_ops, seconds), "ideal_ops_per_s": ideal,
               "efficiency": round(cpu_ops / seconds / ideal, 3), "task": "sys.cpu 10 ms"}
        phase.update(2)
    finally:
        phase.done()
        await pool.close()
    return {"processes": processes, "dispatch": dispatch, "cpu_10ms": cpu}


# --- all -------------------------------------------------------------------------------

def _fmt(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:,.0f} {unit}"


def _summarize(raw: dict[str, Any], results: dict[str, Any], tier: str | None = None
               ) -> dict[str, Any]:
    """Table rows, and each workload's figure against the ceiling of its stage (the log's
    ceilings only against the Kafka tier's workloads)."""
    rows: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []

    def compare(workload: str, figure: float | None, stage: str, ceiling: float | None,
                detail: str, latency: bool = False) -> None:
        """``figure / ceiling``: a share of a rate ("77 %"), or for a latency how many
        times its floor it takes ("7.9x")."""
        if figure is None or not ceiling:
            return
        ratio = round(figure / ceiling, 3)
        comparisons.append({"workload": workload, "stage": stage, "ratio": ratio,
                            "shown": f"{ratio:.1f}x" if latency else f"{ratio * 100:.0f} %",
                            "detail": detail})

    failed = {name: r["error"] for name, r in raw.items() if "error" in r}
    raw = {name: r for name, r in raw.items() if name not in failed}
    b1 = results.get("b1", {}).get("ops_per_s")
    b2 = results.get("b2", {}).get("throughput_per_s")
    b2b = results.get("b2b", {}).get("ops_per_s")
    b4 = results.get("b4", {}).get("efficiency")
    for kind, label in (("raw", "bare ASGI (uvicorn)"), ("fastapi", "FastAPI route")):
        r = raw.get("asgi", {}).get(kind)
        if r:
            lat = r["latency_ms"]
            rows.append(_row(label, _fmt(r["throughput_per_s"], "req/s"),
                             f"p50 {lat['p50']} / p99 {lat['p99']} ms, "
                             f"{r['connections']} connections"))
            compare("B2", b2, label, r["throughput_per_s"],
                    f"{_fmt(b2, 'req/s')} of {_fmt(r['throughput_per_s'], 'req/s')}")
    r = raw.get("api-memory")
    if r:
        lat = r["latency_ms"]
        rows.append(_row("API + worker, memory store", _fmt(r["throughput_per_s"], "req/s"),
                         f"p50 {lat['p50']} / p99 {lat['p99']} ms"))
        compare("B2", b2, "API on memory store", r["throughput_per_s"],
                "what durability (SQLite) costs the API path")
    parse = raw.get("parse")
    if parse:
        rows.append(_row(f"API batch parse, {parse['batch']} jobs per request",
                         _fmt(parse["ops_per_s"], "ops/s"),
                         f"{parse['cpu_us_per_op']} µs CPU per job: JSON decoding and "
                         "validation on one thread, without HTTP or the store"))
        compare("B2b", b2b, "API batch parse", parse["ops_per_s"],
                f"{_fmt(b2b, 'ops/s')} ingested")
    s = raw.get("store")
    if s:
        for size, v in s["insert"].items():
            label = (f"store insert, {size} jobs/txn" if size.isdigit()
                     else "store insert, 64 concurrent one-job callers (group commit)")
            rows.append(_row(label, _fmt(v["ops_per_s"], "ops/s")))
        for size, v in s["claim"].items():
            rows.append(_row(f"store claim, limit {size}", _fmt(v["ops_per_s"], "ops/s")))
        for size, v in s["complete"].items():
            rows.append(_row(f"store complete_many, {size}", _fmt(v["ops_per_s"], "ops/s")))
        cycle = s.get("cycle_256", {}).get("ops_per_s")
        rows.append(_row("store claim+complete cycle (256)", _fmt(cycle, "ops/s"),
                         "the store's own drain limit"))
        compare("B1", b1, "store claim+complete cycle", cycle, f"{_fmt(b1, 'ops/s')} drained")
        ins = s["insert"].get("1000", {}).get("ops_per_s")
        compare("B2b", b2b, "store insert 1000/txn", ins, f"{_fmt(b2b, 'ops/s')} ingested")
        if parse and ins and parse["batch"] == 1000:
            series = 1 / (1 / parse["ops_per_s"] + 1 / ins)
            rows.append(_row("API batch parse, then store insert", _fmt(series, "ops/s"),
                             "one after the other on one core; on two cores, side by "
                             f"side, at most {_fmt(min(parse['ops_per_s'], ins), 'ops/s')} "
                             "(the slower stage)"))
            compare("B2b", b2b, "parse, then insert", series,
                    f"{_fmt(b2b, 'ops/s')} ingested, workers running")
        single = s["insert"].get("1 x 64 callers", {}).get("ops_per_s")
        compare("B2", b2, "store group-commit inserts", single,
                f"{_fmt(b2, 'req/s')} of {_fmt(single, 'ops/s')}")
    p = raw.get("pool")
    if p:
        rows.append(_row("process pool dispatch", _fmt(p["dispatch"]["ops_per_s"], "calls/s"),
                         f"{p['processes']} processes, {p['dispatch']['in_flight']} in flight"))
        rows.append(_row("process pool, 10 ms CPU tasks",
                         f"{p['cpu_10ms']['efficiency'] * 100:.1f} %",
                         f"{p['cpu_10ms']['ops_per_s']} of {p['cpu_10ms']['ideal_ops_per_s']:g}"
                         " ops/s"))
        compare("B4", b4, "process pool alone", p["cpu_10ms"]["efficiency"],
                "efficiency relative to the pool's own")
    k = raw.get("kafka")
    if k:
        _kafka_rows(k, results if tier == "kafka" else {}, rows.append, compare)
    for name, error in failed.items():
        rows.append(_row(f"{name}: not measured", "-", error))
    return {"rows": rows, "comparisons": comparisons}


def _kafka_rows(k: dict[str, Any], results: dict[str, Any],
                row: Callable[[dict[str, Any]], None],
                compare: Callable[..., None]) -> None:
    """The log's rows; B1 against the consumer and B3's wait after the log against one
    message's trip, for the Kafka tier's ``results`` (empty otherwise)."""
    for batch, p in k["produce"].items():
        broker = p.get("broker_cpu_us_per_message")
        row(_row(f"Kafka produce, {batch} per flush", _fmt(p["messages_per_s"], "msgs/s"),
                 f"flush p50 {p['flush_ms']['p50']} / p99 {p['flush_ms']['p99']} ms; "
                 f"{p['cpu_us_per_message']} µs CPU per message in the client"
                 + (f", {broker} in the broker" if broker is not None else "")))
    c = k["consume"]
    row(_row("Kafka consume, one consumer", _fmt(c["messages_per_s"], "msgs/s"),
             f"{c['cpu_us_per_message']} µs CPU per message in the client"))
    one = k["one_message"]
    hop, ack = one["to_consumer_ms"], one["ack_ms"]
    row(_row("Kafka, one message produce → consume", f"p50 {hop['p50']} ms",
             f"p99 {hop['p99']} ms; acknowledged p50 {ack['p50']} / p99 {ack['p99']} ms; "
             f"{one['messages']} messages one at a time"))
    b1 = results.get("b1", {}).get("ops_per_s")
    compare("B1 (Kafka tier)", b1, "Kafka consume", c["messages_per_s"],
            f"{_fmt(b1, 'ops/s')} drained, each leased and recorded in the store")
    # B3 at the targets' rate (half of B2) when the bench ran it, else at its fixed rate.
    name = "b3h" if "b3h" in results else "b3"
    after = (results.get(name, {}).get("enqueue_to_start_parts_ms", {})
             .get("log_to_start", {}).get("p50"))
    label = name.upper()
    compare(f"{label} (Kafka tier)", after, "one message through Kafka", hop["p50"],
            f"{label}'s wait after the log, p50 {after} ms, against one message's produce "
            f"→ consume p50 {hop['p50']} ms", latency=True)


async def run_ceilings(names: list[str], options: Options, reporter: Reporter,
                       sampler: Sampler, results: dict[str, Any], *, store_url: str | None,
                       workdir: Path, processes: int, sqlite_synchronous: str = "FULL",
                       kafka_bootstrap: str | None = None, tier: str | None = None
                       ) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    deadline = Deadline(options.deadline_s)
    raw: dict[str, Any] = {}
    for name in names:
        try:
            if name == "asgi":
                raw["asgi"] = await asgi_ceiling(options, reporter, sampler, workdir)
            elif name == "api-memory":
                raw["api-memory"] = await api_memory_ceiling(options, reporter, sampler,
                                                             workdir, processes)
            elif name == "parse":
                raw["parse"] = await parse_ceiling(options.b2b_batch, reporter, deadline)
            elif name == "store":
                url = store_url or f"sqlite:///{workdir / 'store-ceiling.db'}"
                raw["store"] = await store_ceiling(url, reporter, deadline,
                                                   sqlite_synchronous)
            elif name == "pool":
                raw["pool"] = await pool_ceiling(processes, reporter, deadline)
            elif name == "kafka":
                if not kafka_bootstrap:
                    raise ValueError("the kafka ceiling needs --kafka-bootstrap")
                raw["kafka"] = await kafka_ceiling(kafka_bootstrap, reporter, deadline,
                                                   sampler)
        except Exception as exc:  # one ceiling failing must not lose the others
            raw[name] = {"error": f"{type(exc).__name__}: {exc}"}
            reporter.note(f"[red]ceiling {name}: {exc}[/]")
    return {"raw": raw, **_summarize(raw, results, tier)}
