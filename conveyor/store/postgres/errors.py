"""Driver errors translated at the adapter boundary.

Anything that means "the database cannot be reached or is restarting" becomes
:class:`~conveyor.errors.StoreUnavailable` (the API answers 503 with ``Retry-After``,
workers back off and retry). Deadlocks and serialization failures are retried a few
times inside the adapter before they are reported the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg import errors as pgerrors

from ...errors import StoreUnavailable

T = TypeVar("T")

RETRYABLE = (pgerrors.DeadlockDetected, pgerrors.SerializationFailure)
"""Transient conflicts between transactions: running the transaction again succeeds."""
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
"""The server is down, restarting, refusing connections, or the connection broke."""


def where(url: str) -> str:
    """``host:port/db`` of ``url``, for one-line messages."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"
    except ValueError:
        return "PostgreSQL"


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Re-raise connection-level driver errors as ``StoreUnavailable`` (``from`` them)."""
    try:
        yield
    except RETRYABLE:
        raise
    except UNAVAILABLE as exc:
        raise StoreUnavailable(f"PostgreSQL at {where(url)} is unavailable: "
                               f"{type(exc).__name__}: {str(exc).strip()}") from exc


async def retrying(make: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Run ``make()`` again on a deadlock or serialization failure (with a short jittered
    pause); the last failure propagates."""
    for attempt in range(attempts):
        try:
            return await make()
        except RETRYABLE:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
    raise AssertionError("unreachable")
