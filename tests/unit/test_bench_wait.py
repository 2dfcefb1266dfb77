"""How a drain waits for its end: the queue counts (a read of the backlog and of recent ends, work
for the system measured) are asked sparingly; the last job, which is cheap, often."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest

from conveyor.bench import control
from conveyor.bench.context import Bench, Deadline, NullReporter, Options
from conveyor.bench.control import wait_finished


class _Server:
    """Answers the two requests a drain's wait makes, for a drain in which the last job
    finishes at ``last_done_s`` and every operation at ``all_done_s``."""

    def __init__(self, last_done_s: float, all_done_s: float, total: int) -> None:
        self.start = asyncio.get_running_loop().time()
        self.last_done_s = last_done_s
        self.all_done_s = all_done_s
        self.total = total
        self.calls: Counter[str] = Counter()

    def _elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self.start

    def encode(self, method: str, path: str) -> tuple[str, str]:
        return method, path

    async def send(self, request: tuple[str, str]) -> tuple[int, bytes]:
        self.calls["job"] += 1
        done = self._elapsed() >= self.last_done_s
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
    monkeypatch.setattr(control, "COUNTS_AFTER_LAST_S", 0.1)

    async def run() -> Counter[str]:
        server = _Server(last_done_s, all_done_s, total=100)
        bench = Bench(target=None, sampler=None, options=Options(poll_s=0.01),  # type: ignore[arg-type]
                      reporter=NullReporter())
        _, counts = await wait_finished(bench, server, "last", 100, 0,  # type: ignore[arg-type]
                                        Deadline(10), "drain")
        assert counts["succeeded"] == 100
        return server.calls

    calls = asyncio.run(run())
    assert calls["job"] >= 5  # the cheap request carries the waiting
    assert 2 <= calls["stats"] <= most_counts, calls


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
    bench = Bench(target=None, sampler=None, options=Options(),  # type: ignore[arg-type]
                  reporter=NullReporter())
    backlog = _Backlog(waiting=10, per_poll=3)
    asyncio.run(control.settle(bench, backlog, Deadline(10), "settle"))  # type: ignore[arg-type]
    assert (backlog.waiting, backlog.asked) == (0, 5)  # 10, 7, 4, 1 left, then none
    idle = _Backlog(waiting=0, per_poll=3)
    asyncio.run(control.settle(bench, idle, Deadline(10), "settle"))  # type: ignore[arg-type]
    assert idle.asked == 1
