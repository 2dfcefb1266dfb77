"""The memory store's state and lifecycle (see :mod:`conveyor.store.memory`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ...errors import StoreUnavailable
from ...keys import ApiKey
from ...model import TaskInfo, WorkerInfo
from .records import JobRow, OpRow

SCHEMA_VERSION = 1


class MemoryCore:
    """The memory store's state, one ``asyncio.Lock`` that makes each call atomic, and
    its lifecycle."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = asyncio.Lock()
        self._closed = False
        self._jobs: dict[str, JobRow] = {}
        self._ops: dict[str, OpRow] = {}  # insertion order is seq order
        self._idempotency: dict[tuple[str, str], str] = {}
        self._tasks: dict[str, TaskInfo] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._seq = 0
        self._keys: dict[str, ApiKey] = {}

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the memory store is closed")

    # lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    async def migrate(self) -> int:
        return SCHEMA_VERSION

    async def ping(self) -> None:
        self._check_open()

    async def now(self) -> float:
        return self._clock()
