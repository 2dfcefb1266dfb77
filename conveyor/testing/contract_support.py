"""Helpers shared by the conformance suites and by adapter test modules.

Builders (:func:`op`, :func:`job`) keep test bodies short; :func:`store_fixture` turns a
store factory into the pytest fixture the suites expect; :func:`eventually` and
:func:`rescue_until` wait on the store instead of sleeping a guessed time, because real
databases measure leases and schedules with their own clocks.

This module holds no ``assert`` statements (failures raise ``AssertionError`` with a
message), so it works the same whether or not pytest rewrote it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ..model import (
    JSON,
    Claim,
    Job,
    NewJob,
    NewOperation,
    Operation,
    OpFilter,
)
from ..store.base import Store

T = TypeVar("T")

LONG_LEASE_S = 30.0
"""A lease no test outlives: the operation stays ours unless the test gives it up."""
SHORT_LEASE_S = 0.3
"""A lease tests let expire; waits for its expiry poll the store for up to ``WAIT_S``."""
WAIT_S = 10.0
"""How long :func:`eventually` polls before failing (generous for slow CI machines)."""
TIME_TOLERANCE_S = 0.05
"""Slack when comparing times the store computed from its clock (float/µs rounding)."""


def op(
    task: str = "t.echo",
    *,
    args: dict[str, JSON] | None = None,
    key: str | None = None,
    priority: int = 0,
    delay_s: float = 0.0,
    max_attempts: int = 3,
    timeout_s: float | None = None,
) -> NewOperation:
    """A :class:`NewOperation` with test defaults."""
    return NewOperation(
        task=task, args=dict(args or {}), key=key, priority=priority, delay_s=delay_s,
        max_attempts=max_attempts, timeout_s=timeout_s,
    )


def job(
    *ops: NewOperation | str,
    queue: str = "default",
    tenant: str = "default",
    metadata: dict[str, JSON] | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    headers: dict[str, str] | None = None,
) -> NewJob:
    """A :class:`NewJob`; a string stands for ``op(task)``; no operations means one."""
    built = tuple(op(o) if isinstance(o, str) else o for o in ops) or (op(),)
    return NewJob(
        operations=built, queue=queue, metadata=dict(metadata or {}), tenant=tenant,
        idempotency_key=idempotency_key, request_hash=request_hash,
        headers=dict(headers or {}),
    )


async def insert(store: Store, *jobs: NewJob) -> list[str]:
    """Insert ``jobs`` (each must be created) and return their ids in order."""
    answers = await store.insert_jobs(list(jobs))
    if [a.job_id for a in answers] != [j.id for j in jobs] or not all(a.created for a in answers):
        raise AssertionError(f"insert_jobs did not create every job: {answers!r}")
    return [a.job_id for a in answers]


async def get_job(store: Store, job_id: str) -> Job:
    found = await store.get_jobs([job_id])
    if len(found) != 1:
        raise AssertionError(f"expected job {job_id}, got {found!r}")
    return found[0]


async def operations(store: Store, *job_ids: str) -> list[Operation]:
    """The operations of ``job_ids`` (all of them, in ``seq`` order)."""
    found: list[Operation] = []
    for job_id in job_ids:
        found.extend(await store.list_operations(OpFilter(job_id=job_id, limit=10_000)))
    return sorted(found, key=lambda o: o.seq)


async def operation(store: Store, op_id: str) -> Operation:
    found = await store.list_operations(OpFilter(ids=(op_id,)))
    if len(found) != 1:
        raise AssertionError(f"expected operation {op_id}, got {found!r}")
    return found[0]


async def claim_all(
    store: Store, queues: Collection[str] = ("default",), worker_id: str = "w1",
    lease_s: float = LONG_LEASE_S, limit: int = 1000,
) -> list[Claim]:
    return await store.claim(list(queues), worker_id, limit, lease_s)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool] = bool,
    *,
    timeout_s: float = WAIT_S,
    interval_s: float = 0.02,
    what: str = "a condition",
) -> T:
    """Call ``probe`` until ``accept`` holds for its result; return that result."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; "
                                 f"last value: {value!r}")
        await asyncio.sleep(interval_s)


async def rescue_until(store: Store, op_ids: Collection[str], limit: int = 1000) -> list[str]:
    """Run ``rescue_expired`` until every one of ``op_ids`` was rescued (their leases must
    be short); returns everything rescued, in the order the store reported it."""
    rescued: list[str] = []

    async def probe() -> list[str]:
        rescued.extend(await store.rescue_expired(limit))
        return rescued

    await eventually(probe, lambda got: set(op_ids) <= set(got),
                     what=f"rescue_expired to return {sorted(op_ids)}")
    return rescued


def store_fixture(make: Callable[[Path], Store]) -> Any:
    """A function-scoped ``store`` fixture: ``make(tmp_path)``, migrated and opened, closed
    after the test. The store must start empty. Use as ``store = store_fixture(...)``."""

    @pytest.fixture
    async def store(tmp_path: Path) -> AsyncIterator[Store]:
        instance = make(tmp_path)
        await instance.migrate()
        await instance.open()
        try:
            yield instance
        finally:
            await instance.close()

    return store


__all__ = [
    "LONG_LEASE_S",
    "SHORT_LEASE_S",
    "TIME_TOLERANCE_S",
    "WAIT_S",
    "claim_all",
    "eventually",
    "get_job",
    "insert",
    "job",
    "op",
    "operation",
    "operations",
    "rescue_until",
    "store_fixture",
]
