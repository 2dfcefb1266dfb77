"""Waiting for a wake-up: an event, or the first of several, with a timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence


async def first_of(wakeups: Sequence[Awaitable[object]], timeout_s: float) -> None:
    """Return when one of ``wakeups`` completes or after ``timeout_s``, whichever is first;
    the others are cancelled and awaited, so none outlives the call."""
    waiters = [asyncio.ensure_future(w) for w in wakeups]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Return when ``event`` is set or after ``timeout_s``, whichever is first; whether
    it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)
    return event.is_set()
