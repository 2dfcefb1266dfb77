"""Tasks used by acceptance tests, loaded with ``--tasks conveyor_test_tasks``.

``test.record`` appends one line per execution to the file named by ``RECORD_LOG`` so a
test can count executions (at-least-once) against recorded outcomes (exactly-once).
"""

from __future__ import annotations

import asyncio
import os
import time

import conveyor


@conveyor.task(name="test.record", max_attempts=5)
async def record(n: int, ctx: conveyor.Context, sleep_s: float = 0.2) -> int:
    await asyncio.sleep(sleep_s)
    with open(os.environ["RECORD_LOG"], "a", encoding="utf-8") as f:
        f.write(f"{ctx.op_id} {ctx.attempt} {n}\n")
    return n


@conveyor.task(name="test.hold")
def hold(n: int, hold_s: float = 0.5) -> int:
    """Runs on the process pool for ``hold_s`` (asleep, so a busy machine does not stretch
    it) and appends ``pid start end n`` to ``RECORD_LOG``: a test can tell which pool
    process ran it and which executions overlapped."""
    started = time.time()
    time.sleep(hold_s)
    with open(os.environ["RECORD_LOG"], "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {started!r} {time.time()!r} {n}\n")
    return n
