"""Outbox conformance cases; run through
:class:`conveyor.testing.outbox_contract.OutboxContract`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ..model import ErrorInfo, Lease, OpFilter, OpStatus, Outcome
from ..store.base import OutboxEntry, OutboxSignal, OutboxStore, Store
from .contract_support import (
    LONG_LEASE_S,
    SHORT_LEASE_S,
    TIME_TOLERANCE_S,
    eventually,
    insert,
    job,
    op,
    operation,
    rescue_until,
)


class Both(Store, OutboxStore):
    """A store with the outbox capability (for type hints only)."""


async def _drain(store: Both) -> list[OutboxEntry]:
    """Claim and mark every due row; returns them in publication order."""
    got: list[OutboxEntry] = []
    while batch := await store.claim_outbox(100, LONG_LEASE_S):
        got.extend(batch)
        await store.mark_published([e.id for e in batch])
    return got


class OutboxCases:
    """Needs a fixture ``store``: opened, migrated, empty, with ``enable_outbox()`` done."""

    async def test_submission_writes_one_row_per_operation_in_order(self, store: Both) -> None:
        """Rows are written with the submission, in ``seq`` order, with key and headers."""
        await insert(store, job(op("t.a", key="k"), "t.b"), job(op("t.c", key="k")))
        rows = await _drain(store)
        ops = await store.list_operations(OpFilter(limit=100))
        assert [(e.op_id, e.key, e.kind) for e in rows] == [
            (o.id, o.key, "dispatch") for o in sorted(ops, key=lambda o: o.seq)]
        assert await store.outbox_backlog() == {}
        assert await store.claim_outbox(10, LONG_LEASE_S) == []

    async def test_delayed_operations_are_due_at_run_at(self, store: Both) -> None:
        await insert(store, job(op("t.later", delay_s=0.5)))
        assert await store.claim_outbox(10, LONG_LEASE_S) == []
        [entry] = await eventually(lambda: store.claim_outbox(10, LONG_LEASE_S),
                                   what="the delayed row to fall due")
        assert entry.kind == "dispatch"

    async def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(
            self, store: Both) -> None:
        """A relay that dies mid-batch loses nothing: its rows come back after the lease."""
        await insert(store, job("t.a", "t.b"))
        first = await store.claim_outbox(10, SHORT_LEASE_S)
        assert len(first) == 2
        assert await store.claim_outbox(10, SHORT_LEASE_S) == []
        again = await eventually(lambda: store.claim_outbox(10, LONG_LEASE_S),
                                 what="the lease of the claimed rows to end")
        assert [e.id for e in again] == [e.id for e in first]
        await store.mark_published([e.id for e in again])
        assert await store.outbox_backlog() == {}

    async def test_retry_rescue_release_replay_and_dead_write_rows(self, store: Both) -> None:
        """Every change that makes an operation ready again writes a row (due at its
        ``run_at``); becoming dead writes a ``dead`` row."""
        [job_id] = await insert(store, job(op("t.a", max_attempts=2)))
        [first] = await _drain(store)
        delivered = await store.claim_delivered([first.op_id], "w1", LONG_LEASE_S, 1.0)
        [claim] = delivered.claims
        assert await store.complete_many([Outcome.retry(claim, ErrorInfo("E", "x"), 0.2)])
        [retry] = await eventually(lambda: _drain(store), what="the retry row to be due")
        assert (retry.op_id, retry.kind) == (claim.op_id, "dispatch")

        [claim] = (await store.claim_delivered([claim.op_id], "w1", SHORT_LEASE_S, 1.0)).claims
        await rescue_until(store, [claim.op_id])
        # Attempts are spent: the rescue made it dead.
        assert (await operation(store, claim.op_id)).status is OpStatus.DEAD
        [dead] = await _drain(store)
        assert (dead.op_id, dead.kind) == (claim.op_id, "dead")
        assert dead.payload["task"] == "t.a" and dead.payload["attempts"] == 2
        assert dead.payload["error"]["type"] == "LeaseExpired"

        assert await store.replay(OpFilter(ids=(claim.op_id,))) == [claim.op_id]
        [replayed] = await _drain(store)
        assert (replayed.op_id, replayed.kind) == (claim.op_id, "dispatch")
        [claim] = (await store.claim_delivered([claim.op_id], "w1", LONG_LEASE_S, 1.0)).claims
        assert await store.release([Lease(claim.op_id, claim.lease_token)]) == 1
        [released] = await _drain(store)
        assert released.op_id == claim.op_id
        assert job_id

    async def test_claim_delivered_skips_stale_and_parks_key_blocked(
            self, store: Both) -> None:
        """Finished, running and not-due operations are skipped; one whose earlier
        operation of its key is open is parked (a new row, due after ``park_s``)."""
        await insert(store, job(op("t.first", key="k")), job(op("t.second", key="k")),
                     job(op("t.free")), job(op("t.later", delay_s=60)))
        rows = await _drain(store)
        ids = {e.op_id: e for e in rows}
        by_task = {o.task: o.id for o in await store.list_operations(OpFilter(limit=10))}
        assert set(ids) == set(by_task.values()) - {by_task["t.later"]}, "t.later: not due"
        got = await store.claim_delivered(list(by_task.values()), "w1", LONG_LEASE_S, 0.3)
        assert sorted(c.task for c in got.claims) == ["t.first", "t.free"]
        assert got.parked == [by_task["t.second"]]
        assert await store.claim_outbox(10, LONG_LEASE_S) == [], "parked: not due yet"
        [parked] = await eventually(lambda: store.claim_outbox(10, LONG_LEASE_S),
                                    what="the parked row to fall due")
        assert parked.op_id == by_task["t.second"]
        await store.mark_published([parked.id])
        # A second delivery of running or finished operations is stale.
        again = await store.claim_delivered(
            [by_task["t.first"], by_task["t.free"]], "w2", LONG_LEASE_S, 0.3)
        assert (again.claims, again.parked) == ([], [])
        first = next(c for c in got.claims if c.task == "t.first")
        assert await store.complete_many([Outcome.succeeded(first, 1)]) == [True]
        [second] = (await store.claim_delivered([by_task["t.second"]], "w1", LONG_LEASE_S,
                                                0.3)).claims
        assert second.task == "t.second"

    async def test_reconcile_redispatches_only_old_rows_without_outbox(
            self, store: Both) -> None:
        await insert(store, job("t.a"), job("t.b"))
        await _drain(store)
        assert await store.reconcile_outbox("default", 3600.0, 100) == []
        redispatched = await eventually(
            lambda: store.reconcile_outbox("default", 0.2, 100),
            what="the operations to be old enough")
        assert len(redispatched) == 2
        assert await store.reconcile_outbox("default", 0.0, 100) == [], "rows exist now"
        assert await store.outbox_backlog() == {"default": 2}

    async def test_enable_is_idempotent(self, store: Both) -> None:
        await store.enable_outbox()
        await store.enable_outbox()
        await insert(store, job("t.a"))
        assert len(await _drain(store)) == 1

    async def test_next_due_is_the_earliest_row_nobody_publishes(self, store: Both) -> None:
        """What an idle relay waits for: none, a delayed row's remaining delay, 0 for a
        due row; rows being published do not count."""
        assert await store.next_outbox_due_s() is None
        await insert(store, job(op("t.later", delay_s=30)))
        later_s = await store.next_outbox_due_s()
        assert later_s is not None and 28.0 < later_s <= 30.0 + TIME_TOLERANCE_S, later_s
        await insert(store, job("t.now"))
        assert await store.next_outbox_due_s() == 0.0
        [claimed] = await store.claim_outbox(10, LONG_LEASE_S)
        again_s = await store.next_outbox_due_s()
        assert again_s is not None and 28.0 < again_s <= later_s, (again_s, later_s)
        await store.mark_published([claimed.id])
        assert await store.next_outbox_due_s() == pytest.approx(again_s, abs=1.0)

    async def test_wait_outbox_ends_when_rows_are_written(self, store: Both) -> None:
        """The optional signal: the first call returns at once, a quiet one waits its
        timeout, and any row written (due now or later, by a submission or by parking)
        ends a wait at once."""
        if not isinstance(store, OutboxSignal):
            pytest.skip("no OutboxSignal")
        await _quiet(store)
        await insert(store, job(op("t.first", key="k")), job(op("t.second", key="k")))
        by_task = {o.task: o.id for o in await store.list_operations(OpFilter(limit=10))}
        assert await _woken_s(store, 0.0) < 0.2, "rows written before the call"
        await _drain(store)
        await _quiet(store)
        assert await _woken_s(store, 0.1, lambda: insert(store, job(op("t.x", delay_s=60))))\
            < 1.0, "a submission (delayed) ends the wait"
        await _quiet(store)
        got = await store.claim_delivered(list(by_task.values()), "w1", LONG_LEASE_S, 30.0)
        assert got.parked == [by_task["t.second"]]
        assert await _woken_s(store, 0.0) < 0.2, "parking wrote a row"


async def _quiet(store: OutboxSignal) -> None:
    """Consume pending wake-ups (the first call, a listener connecting) until a wait
    lasts its whole timeout."""
    for _ in range(20):
        started = time.monotonic()
        await store.wait_outbox(0.3)
        if time.monotonic() - started >= 0.25:
            return
    raise AssertionError("wait_outbox never waited")


async def _woken_s(store: OutboxSignal, after_s: float, write: Any = None) -> float:
    """Seconds from ``write`` (run ``after_s`` into a 10 s wait) to the wait's end."""
    waiting = asyncio.create_task(store.wait_outbox(10.0))
    await asyncio.sleep(after_s)
    started = time.monotonic()
    if write is not None:
        await write()
    await waiting
    return time.monotonic() - started
