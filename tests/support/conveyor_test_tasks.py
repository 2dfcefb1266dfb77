"""Tasks used by acceptance tests, loaded with ``--tasks conveyor_test_tasks``.

``test.record`` appends one line per execution to the file named by ``RECORD_LOG`` so a
test can count executions (at-least-once) against recorded outcomes (exactly-once).
"""

from __future__ import annotations

import asyncio
import os

import conveyor


@conveyor.task(name="test.record", max_attempts=5)
async def record(n: int, ctx: conveyor.Context, sleep_s: float = 0.2) -> int:
    await asyncio.sleep(sleep_s)
    with open(os.environ["RECORD_LOG"], "a", encoding="utf-8") as f:
        f.write(f"{ctx.op_id} {ctx.attempt} {n}\n")
    return n
