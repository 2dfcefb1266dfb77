"""The open loop's generator sleeps between arrivals, never spins: under uvloop a sleep of
under half a millisecond returns at once, and at 2,000 arrivals/s every sleep until the
next arrival was one."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable

import pytest
import uvloop

from conveyor.bench import workloads
from conveyor.bench.context import Bench, Deadline, NullReporter, Options


class _Pool:
    """Answers every submission at once with a job."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        self.sent += 1
        return 202, b'{"id":"j%d","status":"queued"}' % self.sent


def test_arrivals_at_2000_per_s_never_sleep_under_a_tick(
        monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    real_sleep = asyncio.sleep

    def recording_sleep(delay: float, *args: object) -> Awaitable[object]:
        delays.append(delay)
        return real_sleep(delay, *args)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    bench = Bench(target=None, sampler=None, options=Options(),  # type: ignore[arg-type]
                  reporter=NullReporter())
    pool = _Pool()
    rate_per_s, duration_s = 2000.0, 0.5

    async def run() -> dict[str, object]:
        return await workloads.open_loop(bench, pool, b"POST", rate_per_s,  # type: ignore[arg-type]
                                         duration_s, Deadline(30), "B3")

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run())

    n = int(rate_per_s * duration_s)
    assert result["requests"] == result["ok"] == pool.sent == n
    assert len(result["ids"]) == n  # type: ignore[arg-type]
    generator = [d for d in delays if d != 0.25]  # the progress ticker's
    assert generator and min(generator) >= workloads.TICK_S
    # one sleep per tick at most (spinning made hundreds of thousands)
    assert len(generator) <= math.ceil(duration_s / workloads.TICK_S) + 1
    lag = result["generator_lag_ms"]
    assert lag["p50"] <= 2 * workloads.TICK_S * 1e3  # type: ignore[index]
