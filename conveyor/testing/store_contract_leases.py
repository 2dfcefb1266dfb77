"""Store conformance, part 3: the worker side. Claim order and exclusivity, per-key order,
fencing, heartbeats, outcomes, retry delays, release and rescue of expired leases.

Leases are measured by the store's own clock, so expiry is tested with real short leases
(``SHORT_LEASE_S``) and by polling the store, never with an injected clock. Run through
:class:`conveyor.testing.store_contract.StoreContract`.
"""

from __future__ import annotations

import asyncio

from ..model import ErrorInfo, JobStatus, Lease, OpFilter, OpStatus, Outcome, OutcomeKind
from ..store.base import Store
from .contract_support import (
    LONG_LEASE_S,
    SHORT_LEASE_S,
    TIME_TOLERANCE_S,
    claim_all,
    eventually,
    get_job,
    insert,
    job,
    op,
    operation,
    operations,
    rescue_until,
)

TOL = TIME_TOLERANCE_S
BOOM = ErrorInfo("Boom", "it broke", "Traceback (most recent call last): ...")


class StoreLeaseCases:
    """Needs a ``store`` fixture: an opened, migrated, empty store."""

    # claim -----------------------------------------------------------------------------
    async def test_claim_leases_one_attempt(self, store: Store) -> None:
        """A claim carries everything the worker needs (args, headers, attempt number, a
        positive fencing token) and marks the operation ``running`` by that worker."""
        new = job(op("t.a", args={"n": [1, {"x": "y"}]}, key="k", max_attempts=4,
                     timeout_s=9.5), queue="q", headers={"traceparent": "00-ab-cd-01"})
        await insert(store, new)
        [stored] = await operations(store, new.id)
        before = await store.now()
        [claim] = await store.claim(["q"], "worker-1", 10, LONG_LEASE_S)
        assert (claim.op_id, claim.job_id, claim.queue, claim.task) == (
            stored.id, new.id, "q", "t.a")
        assert (claim.args, claim.key, claim.attempt, claim.max_attempts, claim.timeout_s) == (
            {"n": [1, {"x": "y"}]}, "k", 1, 4, 9.5)
        assert claim.headers == {"traceparent": "00-ab-cd-01"}
        assert claim.created_at == stored.created_at
        assert claim.lease_token > 0
        running = await operation(store, claim.op_id)
        assert (running.status, running.attempts, running.worker_id) == (
            OpStatus.RUNNING, 1, "worker-1")
        assert running.started_at is not None and running.started_at >= before - TOL
        assert (await get_job(store, new.id)).status is JobStatus.RUNNING
        assert await store.claim(["q"], "worker-2", 10, LONG_LEASE_S) == []

    async def test_claim_takes_only_the_given_queues(self, store: Store) -> None:
        """Only operations of the named queues are claimed; no queues, no claims."""
        await insert(store, job("t.a", queue="a"), job("t.b", queue="b"), job("t.c", queue="c"))
        assert await store.claim([], "w1", 10, LONG_LEASE_S) == []
        assert await store.claim(["a", "b"], "w1", 0, LONG_LEASE_S) == []
        claims = await store.claim(["b", "a", "missing"], "w1", 10, LONG_LEASE_S)
        assert sorted(c.task for c in claims) == ["t.a", "t.b"]
        assert [c.task for c in await store.claim(["c"], "w1", 10, LONG_LEASE_S)] == ["t.c"]

    async def test_claim_by_priority_then_submission_order(self, store: Store) -> None:
        """Higher priority first, then lower ``seq``; ``limit`` takes the head of that order
        and the returned list is in that order."""
        await insert(store, job(op("p0-first"), op("p5", priority=5)),
                     job(op("p-1", priority=-1), op("p0-second")),
                     job(op("p5-second", priority=5)))
        assert [c.task for c in await claim_all(store, limit=2)] == ["p5", "p5-second"]
        assert [c.task for c in await claim_all(store, limit=1)] == ["p0-first"]
        assert [c.task for c in await claim_all(store)] == ["p0-second", "p-1"]

    async def test_delayed_operation_waits_for_run_at(self, store: Store) -> None:
        """A ``scheduled`` operation is not claimable before its ``run_at``, then it is."""
        new = job(op("t.later", delay_s=SHORT_LEASE_S))
        await insert(store, new)
        assert await claim_all(store) == []
        claims = await eventually(lambda: claim_all(store), what="the delayed operation")
        assert [c.job_id for c in claims] == [new.id]
        claimed = await operation(store, claims[0].op_id)
        assert claimed.started_at is not None and claimed.started_at >= claimed.run_at - TOL

    async def test_concurrent_claims_hand_out_each_operation_once(self, store: Store) -> None:
        """20 claimers racing over 200 operations: every operation is claimed exactly once."""
        await insert(store, *[job(*[f"t.{i}.{j}" for j in range(10)]) for i in range(20)])
        claimed: list[str] = []
        for _ in range(20):
            rounds = await asyncio.gather(
                *(store.claim(["default"], f"w{n}", 7, LONG_LEASE_S) for n in range(20)))
            got = [c.op_id for r in rounds for c in r]
            if not got:
                break
            claimed.extend(got)
        assert len(claimed) == 200
        assert len(set(claimed)) == 200

    async def test_concurrent_claims_keep_per_key_order(self, store: Store) -> None:
        """Racing claimers never run two operations of one key at once, and each key's
        operations run in submission order."""
        keys = [f"k{i}" for i in range(8)]
        await insert(store, *[job(*[op(f"{k}.{n}", key=k) for k in keys]) for n in range(5)])
        order: dict[str, list[int]] = {k: [] for k in keys}
        for _ in range(50):
            rounds = await asyncio.gather(
                *(store.claim(["default"], f"w{n}", 3, LONG_LEASE_S) for n in range(10)))
            held = [c for r in rounds for c in r]
            if not held:
                break
            held_keys = [c.key for c in held]
            assert len(held_keys) == len(set(held_keys)), f"a key ran twice: {held_keys}"
            for c in held:
                order[str(c.key)].append(int(c.task.rsplit(".", 1)[1]))
            assert all(await store.complete_many([Outcome.succeeded(c, None) for c in held]))
        assert order == {k: [0, 1, 2, 3, 4] for k in keys}

    async def test_claim_ids(self, store: Store) -> None:
        """``claim_ids`` leases the listed operations that are waiting and due, without the
        per-key check; running, finished, not-yet-due and unknown ones are skipped."""
        await insert(store, job(op("t.first", key="k"), op("t.second", key="k"), "t.done",
                                "t.busy", op("t.later", delay_s=3600.0)))
        first, second, done, busy, later = await store.list_operations(OpFilter())
        [c_done, c_busy] = await store.claim_ids([done.id, busy.id], "w1", LONG_LEASE_S)
        assert await store.complete_many([Outcome.succeeded(c_done, None)]) == [True]
        claims = await store.claim_ids(
            [second.id, done.id, busy.id, later.id, "0" * 32], "w2", LONG_LEASE_S)
        assert [(c.op_id, c.attempt) for c in claims] == [(second.id, 1)]
        assert (await operation(store, second.id)).worker_id == "w2"
        assert (await operation(store, first.id)).status is OpStatus.QUEUED
        assert c_busy.lease_token > 0

    # per-key order ---------------------------------------------------------------------
    async def test_per_key_order(self, store: Store) -> None:
        """Of the operations sharing a queue and key, only the earliest open one runs;
        other keys and unkeyed operations are not held back. Key order spans jobs."""
        await insert(store, job(op("a1", key="a"), op("a2", key="a"), op("b1", key="b")),
                     job(op("a3", key="a"), op("free")))
        first = await claim_all(store)
        assert sorted(c.task for c in first) == ["a1", "b1", "free"]
        assert await claim_all(store) == []
        a1 = next(c for c in first if c.task == "a1")
        assert await store.complete_many([Outcome.succeeded(a1, None)]) == [True]
        [a2] = await claim_all(store)
        assert a2.task == "a2"
        assert await store.complete_many([Outcome.retry(a2, BOOM, 0.0)]) == [True]
        [again] = await claim_all(store)  # a retrying operation still holds its key
        assert (again.task, again.attempt) == ("a2", 2)
        assert await store.complete_many([Outcome.succeeded(again, None)]) == [True]
        assert [c.task for c in await claim_all(store)] == ["a3"]

    async def test_key_order_is_per_queue(self, store: Store) -> None:
        """The same key in another queue is an independent sequence."""
        await insert(store, job(op("q1-a", key="k"), op("q1-b", key="k"), queue="q1"),
                     job(op("q2-a", key="k"), queue="q2"))
        claims = await store.claim(["q1", "q2"], "w1", 10, LONG_LEASE_S)
        assert sorted(c.task for c in claims) == ["q1-a", "q2-a"]

    async def test_scheduled_operation_holds_back_its_key(self, store: Store) -> None:
        """An earlier operation that is not due yet still blocks later ones of its key."""
        await insert(store, job(op("later", key="k", delay_s=3600.0)), job(op("now", key="k")))
        assert await claim_all(store) == []

    async def test_finished_operations_do_not_block_their_key(self, store: Store) -> None:
        """``dead`` and ``cancelled`` operations release their key like ``succeeded`` ones."""
        dead, cancelled = job(op("dead", key="k")), job(op("cancelled", key="k"))
        await insert(store, dead, cancelled, job(op("next", key="k")))
        [claim] = await claim_all(store)
        assert await store.complete_many([Outcome.dead(claim, BOOM)]) == [True]
        assert await store.cancel_jobs([cancelled.id]) == [cancelled.id]
        assert [c.task for c in await claim_all(store)] == ["next"]

    async def test_replayed_operation_waits_for_the_running_one(self, store: Store) -> None:
        """A replayed operation never runs alongside a running operation of its key."""
        await insert(store, job(op("first", key="k")))
        [first] = await claim_all(store)
        assert await store.complete_many([Outcome.dead(first, BOOM)]) == [True]
        await insert(store, job(op("second", key="k")))
        [second] = await claim_all(store)
        assert await store.replay(OpFilter(ids=(first.op_id,))) == [first.op_id]
        assert await claim_all(store) == []
        assert await store.complete_many([Outcome.succeeded(second, None)]) == [True]
        [again] = await claim_all(store)
        assert (again.op_id, again.attempt) == (first.op_id, 1)

    # outcomes and fencing --------------------------------------------------------------
    async def test_outcomes_record_each_kind(self, store: Store) -> None:
        """succeeded stores the result; dead and cancelled store the error; all three set
        ``finished_at``. A retry stores the error and waits ``retry_in_s`` as ``retrying``."""
        await insert(store, job("t.ok", "t.dead", "t.cancel", "t.retry"))
        ok, dead, cancel, retry = await claim_all(store)
        result = {"value": [1, 2.5, "ü", None, {"nested": True}]}
        before = await store.now()
        assert await store.complete_many([
            Outcome.succeeded(ok, result), Outcome.dead(dead, BOOM), Outcome.cancelled(cancel),
            Outcome.retry(retry, BOOM, 3600.0),
        ]) == [True, True, True, True]
        after = await store.now()
        got = {o.task: o for o in await store.list_operations(OpFilter())}
        assert (got["t.ok"].status, got["t.ok"].result, got["t.ok"].error) == (
            OpStatus.SUCCEEDED, result, None)
        assert (got["t.dead"].status, got["t.dead"].error) == (OpStatus.DEAD, BOOM)
        assert got["t.cancel"].status is OpStatus.CANCELLED
        assert got["t.cancel"].error == Outcome.cancelled(cancel).error
        for name in ("t.ok", "t.dead", "t.cancel"):
            finished = got[name].finished_at
            assert finished is not None and before - TOL <= finished <= after + TOL
        r = got["t.retry"]
        assert (r.status, r.error, r.attempts, r.finished_at) == (
            OpStatus.RETRYING, BOOM, 1, None)
        assert before + 3600.0 - TOL <= r.run_at <= after + 3600.0 + TOL

    async def test_success_after_retry_clears_the_error(self, store: Store) -> None:
        """The error of an earlier attempt does not outlive a later success."""
        await insert(store, job("t.a"))
        [claim] = await claim_all(store)
        assert await store.complete_many([Outcome.retry(claim, BOOM, 0.0)]) == [True]
        [claim] = await claim_all(store)
        assert claim.attempt == 2
        assert await store.complete_many([Outcome.succeeded(claim, 42)]) == [True]
        done = await operation(store, claim.op_id)
        assert (done.status, done.result, done.error, done.attempts) == (
            OpStatus.SUCCEEDED, 42, None, 2)

    async def test_retry_is_claimable_only_after_retry_in_s(self, store: Store) -> None:
        """A ``retrying`` operation comes back after ``retry_in_s``, as the next attempt."""
        await insert(store, job("t.a"))
        [claim] = await claim_all(store)
        assert await store.complete_many([Outcome.retry(claim, BOOM, SHORT_LEASE_S)]) == [True]
        assert await claim_all(store) == []
        [again] = await eventually(lambda: claim_all(store), what="the retry")
        assert (again.op_id, again.attempt) == (claim.op_id, 2)
        assert again.lease_token > claim.lease_token

    async def test_complete_is_fenced_by_the_lease_token(self, store: Store) -> None:
        """After a lease expired and the operation was claimed again, the old holder's
        outcome is refused and changes nothing; a second outcome is refused too."""
        await insert(store, job("t.a"))
        [old] = await store.claim(["default"], "w-old", 1, SHORT_LEASE_S)
        await rescue_until(store, [old.op_id])
        [new] = await store.claim(["default"], "w-new", 1, LONG_LEASE_S)
        assert new.op_id == old.op_id and new.lease_token > old.lease_token
        assert await store.complete_many([Outcome.succeeded(old, "stale")]) == [False]
        current = await operation(store, new.op_id)
        assert (current.status, current.worker_id, current.result) == (
            OpStatus.RUNNING, "w-new", None)
        assert await store.complete_many([Outcome.succeeded(new, "fresh")]) == [True]
        assert await store.complete_many([Outcome.dead(new, BOOM)]) == [False]
        assert await store.complete_many([Outcome.succeeded(old, "stale")]) == [False]
        done = await operation(store, new.op_id)
        assert (done.status, done.result, done.error) == (OpStatus.SUCCEEDED, "fresh", None)

    async def test_complete_many_answers_in_input_order(self, store: Store) -> None:
        """One answer per outcome, in order; a refused outcome does not spoil the batch."""
        await insert(store, job("t.a", "t.b"))
        a, b = await claim_all(store)
        stale = Outcome(a.op_id, a.lease_token + 1000, OutcomeKind.SUCCEEDED, result="stale")
        unknown = Outcome("0" * 32, 1, OutcomeKind.SUCCEEDED)
        assert await store.complete_many(
            [Outcome.succeeded(a, 1), stale, unknown, Outcome.succeeded(b, 2)]
        ) == [True, False, False, True]
        assert await store.complete_many([]) == []

    # heartbeats ------------------------------------------------------------------------
    async def test_extend_leases_keeps_a_lease_past_its_first_expiry(self, store: Store) -> None:
        """An extended lease outlives its original expiry: rescue leaves it alone and the
        holder's outcome is still accepted."""
        await insert(store, job("t.a"))
        [claim] = await store.claim(["default"], "w1", 1, SHORT_LEASE_S)
        lease = Lease(claim.op_id, claim.lease_token)
        [state] = await store.extend_leases([lease], LONG_LEASE_S)
        assert (state.op_id, state.held, state.cancel_requested) == (claim.op_id, True, False)
        await asyncio.sleep(SHORT_LEASE_S * 2)
        assert await store.rescue_expired(100) == []
        assert (await operation(store, claim.op_id)).status is OpStatus.RUNNING
        assert await store.complete_many([Outcome.succeeded(claim, None)]) == [True]

    async def test_extend_leases_reports_lost_leases(self, store: Store) -> None:
        """Leases with a wrong token, finished or unknown operations are not held; answers
        come one per lease, in order; a lost lease is not revived."""
        await insert(store, job("t.a", "t.b"))
        a, b = await claim_all(store)
        assert await store.complete_many([Outcome.succeeded(b, None)]) == [True]
        states = await store.extend_leases(
            [Lease(a.op_id, a.lease_token + 1), Lease(a.op_id, a.lease_token),
             Lease(b.op_id, b.lease_token), Lease("0" * 32, 1)], LONG_LEASE_S)
        assert [(s.op_id, s.held, s.cancel_requested) for s in states] == [
            (a.op_id, False, False), (a.op_id, True, False), (b.op_id, False, False),
            ("0" * 32, False, False)]
        assert (await operation(store, b.op_id)).status is OpStatus.SUCCEEDED
        assert await store.extend_leases([], LONG_LEASE_S) == []

    # rescue and release ----------------------------------------------------------------
    async def test_rescue_requeues_then_dead_letters(self, store: Store) -> None:
        """An expired lease sends the operation back to ``queued`` (the attempt counts);
        once ``max_attempts`` are spent it goes to ``dead`` with a ``LeaseExpired`` error."""
        new = job(op("t.a", max_attempts=2))
        await insert(store, new)
        [first] = await store.claim(["default"], "w1", 1, SHORT_LEASE_S)
        assert await rescue_until(store, [first.op_id]) == [first.op_id]
        back = await operation(store, first.op_id)
        assert (back.status, back.attempts, back.worker_id, back.finished_at) == (
            OpStatus.QUEUED, 1, None, None)
        [second] = await store.claim(["default"], "w2", 1, SHORT_LEASE_S)
        assert second.attempt == 2 and second.lease_token > first.lease_token
        [old_state] = await store.extend_leases([Lease(first.op_id, first.lease_token)],
                                                LONG_LEASE_S)
        assert old_state.held is False
        await rescue_until(store, [second.op_id])
        dead = await operation(store, second.op_id)
        assert (dead.status, dead.attempts) == (OpStatus.DEAD, 2)
        assert dead.error is not None and dead.error.type == "LeaseExpired"
        assert dead.error.message == (
            "the worker holding the lease stopped responding (attempt 2)")
        assert dead.finished_at is not None
        assert (await get_job(store, new.id)).status is JobStatus.FAILED
        assert await store.complete_many([Outcome.succeeded(second, None)]) == [False]

    async def test_rescue_takes_only_expired_leases_up_to_limit(self, store: Store) -> None:
        """Live leases are left alone; ``limit`` bounds one call; a lease is rescued once."""
        await insert(store, job("t.a", "t.b", "t.c", "t.live"))
        short = await store.claim(["default"], "w1", 3, SHORT_LEASE_S)
        expired_by = await store.now() + SHORT_LEASE_S
        [live] = await store.claim(["default"], "w1", 1, LONG_LEASE_S)
        # All three short leases out first: each row's lease may be stamped by its own
        # clock reading, so a rescue at the boundary could find only some expired.
        await eventually(store.now, lambda now: now > expired_by, what="the short leases")
        first = await store.rescue_expired(2)
        assert len(first) == 2
        rest = await store.rescue_expired(2)
        assert sorted(first + rest) == sorted(c.op_id for c in short)
        assert await store.rescue_expired(100) == []
        assert (await operation(store, live.op_id)).status is OpStatus.RUNNING

    async def test_release_does_not_count_the_attempt(self, store: Store) -> None:
        """A released operation is ``queued`` again at once with the attempt uncounted; the
        old token stays dead (a release or outcome with it is refused)."""
        await insert(store, job("t.a"))
        [claim] = await claim_all(store)
        lease = Lease(claim.op_id, claim.lease_token)
        assert await store.release([Lease(claim.op_id, claim.lease_token + 1)]) == 0
        assert await store.release([lease]) == 1
        back = await operation(store, claim.op_id)
        assert (back.status, back.attempts, back.worker_id) == (OpStatus.QUEUED, 0, None)
        assert back.run_at <= await store.now() + TOL
        assert await store.release([lease]) == 0
        assert await store.complete_many([Outcome.succeeded(claim, None)]) == [False]
        [again] = await claim_all(store)
        assert (again.op_id, again.attempt) == (claim.op_id, 1)
        assert again.lease_token > claim.lease_token

    # cancel meets a running operation --------------------------------------------------
    async def test_cancel_requested_wins_over_retry_release_and_rescue(self, store: Store) -> None:
        """Once a job is cancelled, its running operations end ``cancelled`` whether the
        worker then records a retry, releases the lease, or its lease expires."""
        retried, released, expired = job("t.retry"), job("t.release"), job("t.expire")
        await insert(store, retried, released, expired)
        c_retry, c_release = await claim_all(store, limit=2)
        [c_expire] = await store.claim(["default"], "w1", 1, SHORT_LEASE_S)
        assert sorted(await store.cancel_jobs([retried.id, released.id, expired.id])) == sorted(
            [retried.id, released.id, expired.id])
        assert await store.complete_many([Outcome.retry(c_retry, BOOM, 0.0)]) == [True]
        assert await store.release([Lease(c_release.op_id, c_release.lease_token)]) == 1
        await rescue_until(store, [c_expire.op_id])
        for j in (retried, released, expired):
            got = await get_job(store, j.id)
            assert got.status is JobStatus.CANCELLED, got
            assert got.operations[0].status is OpStatus.CANCELLED
            assert got.operations[0].finished_at is not None
        assert await claim_all(store) == []
