"""The process pool with real child processes: prefetched calls, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from conveyor.errors import TaskTimeout
from conveyor.tasks import Context
from conveyor.worker.pool import ProcessPool

CTX = Context("op", "job", "default", None, 1, 1)


async def _pool(size: int) -> ProcessPool:
    pool = ProcessPool(size)
    await pool.start()
    assert await pool.run("math.add", {"a": 1, "b": 2}, CTX, 60.0) == 3  # warm
    return pool


@pytest.mark.timeout(60)
async def test_a_call_queued_behind_a_timed_out_one_runs_in_the_replacement() -> None:
    pool = await _pool(1)
    try:
        pid = pool.pids[0]
        slow = asyncio.create_task(pool.run("sys.cpu", {"ms": 20_000}, CTX, 0.5))
        await asyncio.sleep(0)
        queued = asyncio.create_task(pool.run("math.add", {"a": 2, "b": 3}, CTX, 60.0))
        with pytest.raises(TaskTimeout):
            await slow
        assert await asyncio.wait_for(queued, 30) == 5
        assert pool.pids and pool.pids[0] != pid  # the overrunning child was killed
    finally:
        await pool.close()


@pytest.mark.timeout(60)
async def test_cancelling_the_running_call_kills_its_child_not_the_queued_call() -> None:
    pool = await _pool(1)
    try:
        pid = pool.pids[0]
        running = asyncio.create_task(pool.run("sys.cpu", {"ms": 30_000}, CTX, None))
        await asyncio.sleep(0.2)
        queued = asyncio.create_task(pool.run("math.mul", {"a": 4, "b": 5}, CTX, 60.0))
        await asyncio.sleep(0)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert await asyncio.wait_for(queued, 30) == 20
        assert pool.pids[0] != pid
    finally:
        await pool.close()


@pytest.mark.timeout(60)
async def test_a_queued_call_cancelled_before_it_starts_is_stopped_when_it_starts() -> None:
    pool = await _pool(1)
    try:
        first = asyncio.create_task(pool.run("sys.cpu", {"ms": 300}, CTX, 60.0))
        await asyncio.sleep(0)
        doomed = asyncio.create_task(pool.run("sys.cpu", {"ms": 30_000}, CTX, None))
        await asyncio.sleep(0)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert await first == 300
        started = time.monotonic()
        # The child started the cancelled 30 s call and was replaced at once.
        assert await asyncio.wait_for(
            pool.run("math.add", {"a": 1, "b": 1}, CTX, 60.0), 20) == 2
        assert time.monotonic() - started < 15
    finally:
        await pool.close()


@pytest.mark.timeout(60)
async def test_every_call_runs_once_with_calls_queued_on_each_child() -> None:
    pool = await _pool(2)
    try:
        results = await asyncio.gather(*(
            pool.run("math.add", {"a": i, "b": 1}, CTX, 60.0) for i in range(200)))
        assert results == [i + 1 for i in range(200)]
    finally:
        await pool.close()


SLOW_IMPORT = '''
import time
from pathlib import Path

from conveyor.tasks import task

time.sleep(1.0)


@task(name="test.double")
def double(x: int) -> int:
    return 2 * x
'''


@pytest.mark.timeout(60)
async def test_start_waits_for_children_to_load_their_tasks_so_timeouts_exclude_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "slow_tasks_mod.py").write_text(SLOW_IMPORT)
    monkeypatch.syspath_prepend(str(tmp_path))
    pool = ProcessPool(2, ["slow_tasks_mod"])
    started = time.monotonic()
    await pool.start()
    try:
        assert time.monotonic() - started >= 1.0  # both children loaded, in parallel
        assert time.monotonic() - started < 10.0
        # A timeout far shorter than the import: only the call itself counts.
        assert await pool.run("test.double", {"x": 21}, CTX, 0.5) == 42
    finally:
        await pool.close()


@pytest.mark.timeout(60)
async def test_start_fails_when_a_child_cannot_load_its_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_tasks_mod.py").write_text("raise RuntimeError('broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pool = ProcessPool(1, ["broken_tasks_mod"])
    with pytest.raises(RuntimeError, match="did not start"):
        await pool.start()
    await pool.close()
