"""How a drain waits for its end: the queue counts (a read of the backlog and of recent ends, work
for the system measured) are asked sparingly; the last jobs, which are cheap, often."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest

from conveyor.bench import control
from conveyor.bench.context import Bench, Deadline, NullReporter, Options
from conveyor.bench.control import wait_finished


def _bench(**options: float) -> Bench:
    """A bench without a target: the control functions only talk to the fake pools."""
    return Bench(target=None, sampler=None, options=Options(**options),  # type: ignore[arg-type]
                 reporter=NullReporter())


class _Server:
    """Answers the two requests a drain's wait makes, for a drain in which the last job
    finishes at ``last_done_s`` and every operation at ``all_done_s``."""

    def __init__(self, last_done_s: float, all_done_s: float, total: int,
                 first_done_s: float | None = None) -> None:
        self.start = asyncio.get_running_loop().time()
        self.last_done_s = last_done_s
        self.first_done_s = last_done_s if first_done_s is None else first_done_s
        self.all_done_s = all_done_s
        self.total = total
        self.calls: Counter[str] = Counter()

    def _elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self.start

    def encode(self, method: str, path: str) -> tuple[str, str]:
        return method, path

    async def send(self, request: tuple[str, str]) -> tuple[int, bytes]:
        """The last job (``/v1/jobs/j<N>``, N the highest) ends at ``last_done_s``, the
        other jobs of the tail at ``first_done_s``."""
        self.calls["job"] += 1
        self.calls[request[1]] += 1
        last = request[1] == "/v1/jobs/j99"
        done = self._elapsed() >= (self.last_done_s if last else self.first_done_s)
        return 200, json.dumps({"status": "succeeded" if done else "running"}).encode()

    async def request(self, method: str, path: str) -> tuple[int, Any]:
        assert (method, path) == ("GET", "/v1/stats")
        self.calls["stats"] += 1
        done = self.total if self._elapsed() >= self.all_done_s else self.total // 2
        return 200, {"queues": [{"counts": {"succeeded": done}}]}


@pytest.mark.parametrize(("last_done_s", "all_done_s", "most_counts"), [
    (0.5, 0.5, 2),    # submission order: the last job's end is the drain's
    (0.1, 0.45, 7),   # a partitioned log: the last job ended before the others
])
def test_counts_are_asked_sparingly(monkeypatch: pytest.MonkeyPatch, last_done_s: float,
                                    all_done_s: float, most_counts: int) -> None:
    monkeypatch.setattr(control, "COUNTS_EVERY_S", 10.0)
    monkeypatch.setattr(control, "COUNTS_AFTER_TAIL_S", 0.1)

    async def run() -> Counter[str]:
        server = _Server(last_done_s, all_done_s, total=100)
        bench = _bench(poll_s=0.01)
        ids = [f"j{i}" for i in range(100)]
        _, counts = await wait_finished(bench, server, ids, 100, 0,  # type: ignore[arg-type]
                                        Deadline(10), "drain")
        assert counts["succeeded"] == 100
        return server.calls

    calls = asyncio.run(run())
    assert calls["job"] >= 5  # the cheap request carries the waiting
    assert 2 <= calls["stats"] <= most_counts, calls


def test_the_whole_tail_must_end_before_counts_are_asked_often(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A partitioned log: the last job ended at once, others of the tail only later. The
    counts stay sparse until the whole tail has ended; jobs seen ended are not asked
    again, and jobs before the tail are never asked."""
    monkeypatch.setattr(control, "COUNTS_EVERY_S", 10.0)
    monkeypatch.setattr(control, "COUNTS_AFTER_TAIL_S", 0.05)

    async def run() -> Counter[str]:
        server = _Server(last_done_s=0.0, all_done_s=0.6, total=100, first_done_s=0.5)
        bench = _bench(poll_s=0.01)
        ids = [f"j{i}" for i in range(100)]
        await wait_finished(bench, server, ids, 100, 0,  # type: ignore[arg-type]
                            Deadline(10), "drain")
        return server.calls

    calls = asyncio.run(run())
    assert calls["/v1/jobs/j99"] == 1
    assert calls["/v1/jobs/j98"] > 10  # waited on while the tail ran
    assert calls["/v1/jobs/j36"] == 1 and calls["/v1/jobs/j35"] == 0
    assert calls["stats"] <= 5, calls  # once at the start, then only after 0.5 s


class _Backlog:
    """A queue whose workers finish ``per_poll`` operations between two count requests."""

    def __init__(self, waiting: int, per_poll: int) -> None:
        self.waiting = waiting
        self.per_poll = per_poll
        self.asked = 0

    async def request(self, method: str, path: str) -> tuple[int, Any]:
        assert (method, path) == ("GET", "/v1/stats")
        self.asked += 1
        running = min(self.waiting, self.per_poll)
        counts = {"queued": self.waiting - running, "running": running, "succeeded": 5}
        self.waiting -= running
        return 200, {"queues": [{"counts": counts}]}


def test_settle_waits_until_nothing_waits_or_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a workload leaves behind (B2b's ingest outruns the workers) is finished before
    the next workload measures anything; an idle queue costs one count request."""
    monkeypatch.setattr(control, "SETTLE_POLL_S", 0.001)
    bench = _bench()
    backlog = _Backlog(waiting=10, per_poll=3)
    asyncio.run(control.settle(bench, backlog, Deadline(10), "settle"))  # type: ignore[arg-type]
    assert (backlog.waiting, backlog.asked) == (0, 5)  # 10, 7, 4, 1 left, then none
    idle = _Backlog(waiting=0, per_poll=3)
    asyncio.run(control.settle(bench, idle, Deadline(10), "settle"))  # type: ignore[arg-type]
    assert idle.asked == 1


class _Outbox:
    """``/v1/stats`` of a Kafka tier whose relay publishes ``per_poll`` rows between two
    requests (``backlog=None``: a tier without an outbox)."""

    def __init__(self, backlog: int | None, per_poll: int = 0) -> None:
        self.backlog = backlog
        self.per_poll = per_poll
        self.asked = 0

    async def request(self, method: str, path: str) -> tuple[int, Any]:
        assert (method, path) == ("GET", "/v1/stats")
        self.asked += 1
        if self.backlog is None:
            return 200, {"queues": [], "transport": None}
        answer = {"kind": "kafka", "outbox_backlog": {"default": self.backlog}}
        self.backlog = max(0, self.backlog - self.per_poll)
        return 200, {"queues": [], "transport": answer}


def test_a_drain_starts_once_the_outbox_is_published(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Kafka the workers start once the relay has published every loaded operation; a
    tier without an outbox waits for nothing."""
    monkeypatch.setattr(control, "SETTLE_POLL_S", 0.001)
    bench = _bench()
    relaying = _Outbox(backlog=1000, per_poll=400)
    seen = asyncio.run(control.wait_published(bench, relaying, Deadline(10), "publish"))  # type: ignore[arg-type]
    assert (relaying.backlog, relaying.asked) == (0, 4)  # 1000, 600, 200, then 0
    assert seen is not None
    store_tier = _Outbox(backlog=None)
    assert asyncio.run(control.wait_published(bench, store_tier, Deadline(10), "publish")) is None  # type: ignore[arg-type]
    assert store_tier.asked == 1
