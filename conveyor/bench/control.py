"""The control-plane calls of the workloads: queue counts, waiting for operations to
finish or for the queue to empty, submitting batches and reading operations back.
They are work for the system measured, so they are paced (see each)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .context import TERMINAL, TRANSIENT, Bench, Deadline, progress_ticker
from .http import HttpPool, LoadError


async def queue_counts(pool: HttpPool) -> Counter[str]:
    status, body = await pool.request("GET", "/v1/stats")
    if status != 200 or not isinstance(body, dict):
        raise LoadError(f"GET /v1/stats answered {status}")
    total: Counter[str] = Counter()
    for q in body.get("queues", []):
        total.update({k: int(v) for k, v in q.get("counts", {}).items()})
    return total


def done_count(counts: Counter[str]) -> int:
    return sum(counts[s] for s in TERMINAL)


SETTLE_POLL_S = 0.5


async def settle(bench: Bench, pool: HttpPool, deadline: Deadline, label: str) -> None:
    """Until no operation waits or runs: a workload whose submissions outrun the workers
    (B2b, B2) leaves them idle for the next one, whose latencies would otherwise include
    draining its backlog (B3 after B2b on PostgreSQL: seconds instead of milliseconds).
    Not measured."""
    phase = bench.reporter.phase(label, None)
    try:
        while True:
            counts = await _retrying(lambda: queue_counts(pool), deadline, label)
            if not any(n for state, n in counts.items() if state not in TERMINAL):
                return
            deadline.check(label)
            await asyncio.sleep(SETTLE_POLL_S)
    finally:
        phase.done()


async def wait_published(bench: Bench, pool: HttpPool, deadline: Deadline, label: str
                         ) -> float | None:
    """Until the outbox is empty (Kafka tier), when the server reports one: a drain of
    loaded operations then starts with all of them in the log, and measures the workers
    instead of a relay still publishing during the drain (which made Kafka drains vary by
    a quarter). Returns the wall time it was seen empty; ``None`` at once without an
    outbox."""
    phase = bench.reporter.phase(label, None)
    try:
        while True:
            status, body = await _retrying(lambda: pool.request("GET", "/v1/stats"),
                                           deadline, label)
            transport = body.get("transport") if status == 200 and isinstance(body, dict) \
                else None
            backlog = transport.get("outbox_backlog") if isinstance(transport, dict) else None
            if not isinstance(backlog, dict):
                return None
            if not any(backlog.values()):
                return time.time()
            deadline.check(label)
            await asyncio.sleep(SETTLE_POLL_S / 5)
    finally:
        phase.done()


async def _retrying(call: Callable[[], Awaitable[Any]], deadline: Deadline, what: str) -> Any:
    """Retry a control call through connection errors (a server restarting)."""
    while True:
        try:
            return await call()
        except TRANSIENT:
            deadline.check(what)
            await asyncio.sleep(0.1)


async def fetch_operations(pool: HttpPool, ids: Sequence[str], deadline: Deadline,
                           concurrency: int = 16) -> list[dict[str, Any]]:
    """The first operation of each job (GET /v1/jobs/{id}), in the order of ``ids``."""
    out: list[dict[str, Any] | None] = [None] * len(ids)
    cursor = 0

    async def worker() -> None:
        nonlocal cursor
        while cursor < len(ids) and deadline.left() > 0:
            i = cursor
            cursor += 1
            raw = pool.encode("GET", f"/v1/jobs/{ids[i]}")
            status, body = await _retrying(lambda raw=raw: pool.send(raw), deadline,  # type: ignore[misc]
                                           "reading jobs")
            if status == 200:
                ops = json.loads(body).get("operations") or [{}]
                out[i] = ops[0]

    await asyncio.gather(*(worker() for _ in range(min(concurrency, max(1, len(ids))))))
    return [o for o in out if o is not None]


async def submit_batches(bench: Bench, pool: HttpPool, op: dict[str, Any], n: int,
                         batch: int, connections: int, deadline: Deadline, label: str,
                         latencies: list[float] | None = None) -> list[str]:
    """Submit ``n`` one-operation jobs through ``POST /v1/jobs/batch``, ``connections``
    batches in flight; 429/503 answers are retried after a pause. Returns the job ids in
    submission order."""
    batches = [min(batch, n - start) for start in range(0, n, batch)]
    bodies: dict[int, bytes] = {}
    for size in set(batches):
        body = json.dumps({"jobs": [op] * size}, separators=(",", ":")).encode()
        bodies[size] = pool.encode("POST", "/v1/jobs/batch", body)
    ids: list[list[str]] = [[] for _ in batches]
    submitted = 0
    cursor = 0
    phase = bench.reporter.phase(label, n)

    async def worker() -> None:
        nonlocal cursor, submitted
        while cursor < len(batches):
            i = cursor
            cursor += 1
            while True:
                deadline.check(label)
                started = time.perf_counter()
                try:
                    status, body = await pool.send(bodies[batches[i]])
                except TRANSIENT:
                    await asyncio.sleep(0.1)
                    continue
                if status == 202:
                    if latencies is not None:
                        latencies.append(time.perf_counter() - started)
                    ids[i] = json.loads(body)["ids"]
                    submitted += len(ids[i])
                    break
                if status in (429, 503):
                    await asyncio.sleep(0.05)
                    continue
                raise LoadError(f"POST /v1/jobs/batch answered {status}: {body[:300]!r}")

    ticker = asyncio.create_task(progress_ticker(phase, lambda: submitted))
    try:
        await asyncio.gather(*(worker() for _ in range(max(1, connections))))
    finally:
        ticker.cancel()
        phase.update(submitted)
        phase.done()
    return [i for chunk in ids for i in chunk]


COUNTS_EVERY_S = 5.0
COUNTS_AFTER_TAIL_S = 1.0
TAIL_JOBS = 64
"""Jobs at the end of a submission that are watched for its end. A partitioned log runs
each partition in order but not the partitions in step: the last job may finish long
before the others. The last 64 cover each of 12 partitions but with a chance of
(11/12)^64, about 0.4 %."""


async def wait_finished(bench: Bench, pool: HttpPool, ids: Sequence[str], target_done: int,
                        baseline: int, deadline: Deadline, label: str
                        ) -> tuple[float, Counter[str]]:
    """Until the store counts ``target_done`` finished operations; returns the wall time it
    was observed and the final counts. Every ``poll_s`` it asks for one of the last
    :data:`TAIL_JOBS` of ``ids`` (cheap), moving on to the next once one has finished.
    The queue counts read the backlog and every operation finished in the last five
    minutes, work for the system measured (~60 ms at 100k operations), so they are asked
    every ``COUNTS_EVERY_S`` for the progress bar, and every ``COUNTS_AFTER_TAIL_S`` once
    the whole tail has finished."""
    phase = bench.reporter.phase(label, target_done - baseline)
    tail = list(ids[-TAIL_JOBS:])
    tail_done = not tail
    next_counts = 0.0
    try:
        while True:
            deadline.check(label)
            try:
                while tail:
                    status, body = await pool.send(pool.encode("GET", f"/v1/jobs/{tail[-1]}"))
                    if status != 200 or json.loads(body).get("status") not in (
                            "succeeded", "failed", "cancelled"):
                        break
                    tail.pop()
                    if not tail:
                        tail_done = True
                        next_counts = 0.0  # count at once, then at the pace below
                now = time.monotonic()
                if now >= next_counts:
                    counts = await queue_counts(pool)
                    phase.update(done_count(counts) - baseline)
                    if done_count(counts) >= target_done:
                        return time.time(), counts
                    next_counts = now + (COUNTS_AFTER_TAIL_S if tail_done else COUNTS_EVERY_S)
            except TRANSIENT:
                pass
            await asyncio.sleep(bench.options.poll_s)
    finally:
        phase.done()
