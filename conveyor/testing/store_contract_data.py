"""Store conformance, part 1: submission, idempotency, reads, job status, cancel, replay,
stats and the task registry. Run through :class:`conveyor.testing.store_contract.StoreContract`.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ..model import (
    ErrorInfo,
    JobFilter,
    JobStatus,
    Lease,
    NewJob,
    OpFilter,
    OpStatus,
    Outcome,
    Submitted,
    TaskInfo,
)
from ..store.base import Store
from .contract_support import (
    LONG_LEASE_S,
    SHORT_LEASE_S,
    TIME_TOLERANCE_S,
    claim_all,
    get_job,
    insert,
    job,
    op,
    operation,
    operations,
    rescue_until,
)

TOL = TIME_TOLERANCE_S


class StoreDataCases:
    """Needs a ``store`` fixture: an opened, migrated, empty store."""

    async def reopen(self, store: Store) -> Store:
        """Close ``store`` and return a new instance on the same data (adapters with durable
        storage override this so read-back is checked across connections); the default
        returns ``store`` itself."""
        return store

    # lifecycle -------------------------------------------------------------------------
    async def test_lifecycle_calls(self, store: Store) -> None:
        """``migrate`` is idempotent and reports one version; ``ping`` answers; ``now`` is
        the store's clock, close to Unix time and not going backwards."""
        version = await store.migrate()
        assert version >= 1
        assert await store.migrate() == version
        await store.ping()
        first = await store.now()
        assert abs(first - time.time()) < 300
        assert await store.now() >= first

    # submission ------------------------------------------------------------------------
    async def test_insert_reads_back_every_field(self, store: Store) -> None:
        """Everything submitted is stored as given, with the store's defaults: ops
        ``queued`` (``scheduled`` when delayed), zero attempts, ``run_at = created_at +
        delay_s``, no result, error, start or finish."""
        args = {"text": "héllo ✓ \"quoted\"", "n": 3, "x": 0.1, "big": 2**53, "flag": True,
                "none": None, "list": [1, [2, {"a": "b"}]], "obj": {"k": {"deep": [1.5, -2]}}}
        new = job(
            op("t.first", args=args, key="k1", priority=7, max_attempts=5, timeout_s=12.5),
            op("t.second", delay_s=60.0),
            queue="q.read", tenant="acme", metadata={"who": "me", "n": [1, 2]},
            idempotency_key="idem-1", request_hash="h1", headers={"traceparent": "00-ab-cd-01"},
        )
        before = await store.now()
        assert await store.insert_jobs([new]) == [Submitted(new.id, created=True)]
        after = await store.now()
        got = await get_job(store, new.id)
        assert (got.id, got.queue, got.tenant, got.status) == (new.id, "q.read", "acme",
                                                               JobStatus.QUEUED)
        assert got.metadata == {"who": "me", "n": [1, 2]}
        assert got.idempotency_key == "idem-1"
        assert before - TOL <= got.created_at <= after + TOL
        first, second = got.operations
        assert first.id != second.id and first.seq < second.seq
        assert (first.job_id, first.queue, first.task, first.args, first.key) == (
            new.id, "q.read", "t.first", args, "k1")
        assert (first.priority, first.max_attempts, first.timeout_s) == (7, 5, 12.5)
        assert (first.status, first.attempts, first.result, first.error) == (
            OpStatus.QUEUED, 0, None, None)
        assert (first.started_at, first.finished_at, first.worker_id) == (None, None, None)
        assert first.cancel_requested is False
        assert before - TOL <= first.created_at <= after + TOL
        assert first.run_at == pytest.approx(first.created_at, abs=TOL)
        assert (second.task, second.args, second.key, second.priority) == ("t.second", {}, None, 0)
        assert (second.status, second.max_attempts, second.timeout_s) == (
            OpStatus.SCHEDULED, 3, None)
        assert second.run_at == pytest.approx(second.created_at + 60.0, abs=TOL)
        reopened = await self.reopen(store)
        try:
            assert await reopened.get_jobs([new.id]) == [got]
        finally:
            if reopened is not store:
                await reopened.close()

    async def test_insert_can_return_the_jobs_as_stored(self, store: Store) -> None:
        """With ``return_jobs``, each created job's answer carries the job exactly as
        ``get_jobs`` reads it back (ids, seq, times, args, status); idempotent hits and
        conflicts carry none, and without the flag no answer does."""
        args = {"z": 1, "a": [0.1, {"k": None}], "text": "é ✓"}
        first = job(idempotency_key="k", request_hash="h")
        await insert(store, first)
        fresh = job(op("t.now", args=args, key="k1", priority=3),
                    op("t.later", delay_s=30.0, timeout_s=2.5),
                    queue="q.ret", tenant="acme", metadata={"m": [1, 2]})
        batch = [fresh, job(idempotency_key="k", request_hash="h"),
                 job(idempotency_key="k", request_hash="other"), job("t.plain")]
        answers = await store.insert_jobs(batch, return_jobs=True)
        assert [(a.job_id, a.created, a.conflict) for a in answers] == [
            (fresh.id, True, False), (first.id, False, False), (first.id, False, True),
            (batch[3].id, True, False)]
        assert [a.job for a in answers[1:3]] == [None, None]
        stored = {j.id: j for j in await store.get_jobs([fresh.id, batch[3].id])}
        assert answers[0].job == stored[fresh.id]
        assert answers[3].job == stored[batch[3].id]
        returned = answers[0].job
        assert returned is not None
        assert [(o.task, o.status, o.args) for o in returned.operations] == [
            ("t.now", OpStatus.QUEUED, args), ("t.later", OpStatus.SCHEDULED, {})]
        assert (returned.status, returned.tenant, returned.metadata) == (
            JobStatus.QUEUED, "acme", {"m": [1, 2]})
        plain = await store.insert_jobs([job()])
        assert plain[0].created and plain[0].job is None

    async def test_concurrent_inserts_each_return_their_own_job(self, store: Store) -> None:
        """Concurrent single-job inserts (merged into one transaction by adapters that
        group commits) each get their own job back; calls without the flag get none."""
        jobs = [job(f"t.{i}", metadata={"i": i}) for i in range(30)]
        answers = await asyncio.gather(*(
            store.insert_jobs([j], return_jobs=i % 3 != 0) for i, j in enumerate(jobs)))
        for i, (new, [answer]) in enumerate(zip(jobs, answers, strict=True)):
            assert (answer.job_id, answer.created) == (new.id, True)
            if i % 3 == 0:
                assert answer.job is None
            else:
                assert answer.job is not None
                assert answer.job == await get_job(store, new.id)
                assert answer.job.metadata == {"i": i}
                assert [o.task for o in answer.job.operations] == [f"t.{i}"]

    async def test_insert_answers_one_per_job_in_order(self, store: Store) -> None:
        """One ``Submitted`` per job, in input order, also when some are idempotent hits."""
        first = job(idempotency_key="a", request_hash="h")
        batch = [job("t.1"), job(idempotency_key="a", request_hash="h"), job("t.2", "t.3"),
                 job(idempotency_key="a", request_hash="other")]
        await insert(store, first)
        answers = await store.insert_jobs(batch)
        assert answers == [
            Submitted(batch[0].id, created=True),
            Submitted(first.id, created=False),
            Submitted(batch[2].id, created=True),
            Submitted(first.id, created=False, conflict=True),
        ]
        assert len(await operations(store, batch[2].id)) == 2

    async def test_a_large_batch_is_stored_whole_and_in_order(self, store: Store) -> None:
        """A batch of 75 jobs and 150 operations (more rows than an adapter may put in one
        statement, and counts that are not a multiple of it) is stored whole: every job
        with its own fields, and ``seq`` in submission order across the batch."""
        batch = [job(op(f"t.{i}", args={"i": i, "x": i / 7}, key=f"k{i % 5}" if i % 2 else None,
                        priority=i % 3, delay_s=float(i % 4 == 0) * 30),
                     op(f"t.{i}.b"), queue=f"q{i % 2}", metadata={"i": i} if i % 3 else None)
                 for i in range(75)]
        answers = await store.insert_jobs(batch)
        assert answers == [Submitted(j.id, created=True) for j in batch]
        stored = {j.id: j for j in await store.get_jobs([j.id for j in batch])}
        assert len(stored) == 75
        for i, new in enumerate(batch):
            got = stored[new.id]
            assert (got.queue, got.metadata) == (f"q{i % 2}", new.metadata)
            first, second = got.operations
            assert (first.task, first.args, first.key, first.priority) == (
                f"t.{i}", {"i": i, "x": i / 7}, new.operations[0].key, i % 3)
            assert first.status is (OpStatus.SCHEDULED if i % 4 == 0 else OpStatus.QUEUED)
            assert first.run_at == pytest.approx(first.created_at + (30 if i % 4 == 0 else 0),
                                                 abs=TOL)
            assert (second.task, second.args) == (f"t.{i}.b", {})
        ops = await store.list_operations(OpFilter(limit=1_000))
        assert [o.task for o in sorted(ops, key=lambda o: o.seq)] == [
            task for i in range(75) for task in (f"t.{i}", f"t.{i}.b")]

    async def test_a_failing_batch_writes_nothing(self, store: Store) -> None:
        """A batch is one transaction: a job that cannot be written (its id exists) fails the
        call, and the other jobs of the batch are not written either."""
        [existing] = await insert(store, job())
        fresh = job("t.fresh")
        clash = NewJob(operations=(op("t.clash"),), id=existing)
        with pytest.raises(Exception):  # noqa: B017 - the error type is the adapter's own
            await store.insert_jobs([fresh, clash])
        assert await store.get_jobs([fresh.id]) == []
        assert [o.task for o in await store.list_operations(OpFilter())] == ["t.echo"]

    async def test_idempotent_resubmission_returns_the_first_job(self, store: Store) -> None:
        """Same tenant, key and body hash: the first job's id, ``created=False``, nothing new
        written. Without a key, identical bodies are separate jobs."""
        first = job(idempotency_key="order-1", request_hash="h")
        again = job(idempotency_key="order-1", request_hash="h")
        await insert(store, first)
        assert await store.insert_jobs([again]) == [Submitted(first.id, created=False)]
        assert await store.get_jobs([again.id]) == []
        plain = [job(), job()]
        await insert(store, *plain)
        listed = await store.list_jobs(JobFilter(limit=100))
        assert sorted(j.id for j in listed) == sorted([first.id, plain[0].id, plain[1].id])

    async def test_idempotency_conflict_writes_nothing(self, store: Store) -> None:
        """Same key, different body hash: ``conflict=True`` naming the first job; the new
        job is not written and the first one is unchanged."""
        first = job("t.a", idempotency_key="k", request_hash="h1", metadata={"v": 1})
        await insert(store, first)
        stored = await get_job(store, first.id)
        other = job("t.b", idempotency_key="k", request_hash="h2", metadata={"v": 2})
        assert await store.insert_jobs([other]) == [
            Submitted(first.id, created=False, conflict=True)]
        assert await store.get_jobs([other.id]) == []
        assert await get_job(store, first.id) == stored
        assert [o.task for o in await store.list_operations(OpFilter())] == ["t.a"]

    async def test_idempotency_keys_are_per_tenant(self, store: Store) -> None:
        """Two tenants may use the same key; each gets its own job."""
        a = job(tenant="a", idempotency_key="k", request_hash="h")
        b = job(tenant="b", idempotency_key="k", request_hash="h")
        assert await store.insert_jobs([a]) == [Submitted(a.id, created=True)]
        assert await store.insert_jobs([b]) == [Submitted(b.id, created=True)]
        assert {j.tenant for j in await store.get_jobs([a.id, b.id])} == {"a", "b"}

    async def test_idempotency_within_one_batch(self, store: Store) -> None:
        """A key repeated inside one batch resolves to the batch's first job with it."""
        a = job(idempotency_key="k", request_hash="h")
        b = job(idempotency_key="k", request_hash="h")
        assert await store.insert_jobs([a, b]) == [
            Submitted(a.id, created=True), Submitted(a.id, created=False)]
        assert len(await store.list_jobs(JobFilter())) == 1

    async def test_concurrent_inserts_with_one_key_create_one_job(self, store: Store) -> None:
        """50 concurrent submissions with one key: exactly one job is created and every
        caller learns its id."""
        attempts = [job(idempotency_key="same", request_hash="h") for _ in range(50)]
        answers = await asyncio.gather(*(store.insert_jobs([j]) for j in attempts))
        flat = [a for batch in answers for a in batch]
        assert sum(a.created for a in flat) == 1
        winner = next(a.job_id for a in flat if a.created)
        assert all(a.job_id == winner and not a.conflict for a in flat)
        assert [j.id for j in await store.list_jobs(JobFilter(limit=100))] == [winner]
        assert len(await store.list_operations(OpFilter(limit=100))) == 1

    # reads -----------------------------------------------------------------------------
    async def test_get_jobs_skips_unknown_ids_and_other_tenants(self, store: Store) -> None:
        """``get_jobs`` returns the jobs that exist and belong to the tenant, if one is given."""
        a, b = job(tenant="a"), job(tenant="b")
        await insert(store, a, b)
        found = await store.get_jobs([a.id, b.id, "0" * 32])
        assert sorted(j.id for j in found) == sorted([a.id, b.id])
        assert [j.id for j in await store.get_jobs([a.id, b.id], tenant="a")] == [a.id]
        assert await store.get_jobs([a.id], tenant="b") == []
        assert await store.get_jobs([]) == []

    async def test_list_jobs_pages_newest_first_without_gaps(self, store: Store) -> None:
        """Newest (largest id) first; ``after`` continues below the previous page's last id,
        so walking the pages yields every job exactly once."""
        ids = await insert(store, *[job() for _ in range(23)])
        seen: list[str] = []
        after: str | None = None
        for _ in range(10):
            page = await store.list_jobs(JobFilter(after=after, limit=10))
            if not page:
                break
            assert len(page) <= 10
            seen.extend(j.id for j in page)
            after = page[-1].id
        assert seen == sorted(ids, reverse=True)

    async def test_list_jobs_filters(self, store: Store) -> None:
        """Filters by tenant, queue, status and task (a job matches when any of its
        operations has that task); filters combine."""
        j1 = job("t.x", queue="qa", tenant="a")
        j2 = job("t.y", "t.z", queue="qb", tenant="a")
        j3 = job("t.x", queue="qa", tenant="b")
        await insert(store, j1, j2, j3)
        [claim] = await store.claim(["qa"], "w1", 1, LONG_LEASE_S)
        assert claim.job_id == j1.id
        assert await store.complete_many([Outcome.succeeded(claim, 1)]) == [True]

        async def ids(**kw: object) -> set[str]:
            return {j.id for j in await store.list_jobs(JobFilter(**kw))}  # type: ignore[arg-type]

        assert await ids(tenant="a") == {j1.id, j2.id}
        assert await ids(queue="qa") == {j1.id, j3.id}
        assert await ids(task="t.z") == {j2.id}
        assert await ids(task="t.x", tenant="b") == {j3.id}
        assert await ids(status=JobStatus.SUCCEEDED) == {j1.id}
        assert await ids(status=JobStatus.QUEUED) == {j2.id, j3.id}
        assert await ids(status=JobStatus.QUEUED, queue="qa") == {j3.id}
        assert await ids(tenant="nobody") == set()

    async def test_list_operations_filters_and_pages_by_seq(self, store: Store) -> None:
        """Operations in ``seq`` order after ``after_seq``, up to ``limit``, filtered by
        tenant, status, queue, task, job and ids."""
        j1 = job("t.a", "t.b", "t.a", queue="q1", tenant="a")
        j2 = job("t.b", "t.a", queue="q2", tenant="b")
        await insert(store, j1, j2)
        everything = await store.list_operations(OpFilter(limit=100))
        assert len(everything) == 5
        assert [o.seq for o in everything] == sorted({o.seq for o in everything})
        assert [o.job_id for o in everything] == [j1.id] * 3 + [j2.id] * 2
        page1 = await store.list_operations(OpFilter(limit=2))
        page2 = await store.list_operations(OpFilter(limit=2, after_seq=page1[-1].seq))
        page3 = await store.list_operations(OpFilter(limit=2, after_seq=page2[-1].seq))
        assert page1 + page2 + page3 == everything
        assert await store.list_operations(OpFilter(after_seq=everything[-1].seq)) == []

        async def tasks(**kw: object) -> list[tuple[str, str]]:
            found = await store.list_operations(OpFilter(**kw))  # type: ignore[arg-type]
            return [(o.job_id, o.task) for o in found]

        assert await tasks(tenant="b") == [(j2.id, "t.b"), (j2.id, "t.a")]
        assert await tasks(queue="q1", task="t.a") == [(j1.id, "t.a"), (j1.id, "t.a")]
        assert await tasks(job_id=j2.id) == [(j2.id, "t.b"), (j2.id, "t.a")]
        picked = (everything[1].id, everything[4].id)
        assert await tasks(ids=picked) == [(j1.id, "t.b"), (j2.id, "t.a")]
        assert await tasks(status=OpStatus.RUNNING) == []
        assert len(await store.list_operations(OpFilter(status=OpStatus.QUEUED))) == 5

    # job status ------------------------------------------------------------------------
    async def test_job_status_queued_running_succeeded(self, store: Store) -> None:
        """``queued`` until an operation starts, ``running`` while any is unfinished after
        that (also between operations), ``succeeded`` when all succeeded."""
        new = job("t.a", "t.b")
        await insert(store, new)
        assert (await get_job(store, new.id)).status is JobStatus.QUEUED
        claims = await claim_all(store, limit=1)
        assert (await get_job(store, new.id)).status is JobStatus.RUNNING
        assert await store.complete_many([Outcome.succeeded(claims[0], "one")]) == [True]
        assert (await get_job(store, new.id)).status is JobStatus.RUNNING
        claims = await claim_all(store)
        assert len(claims) == 1
        assert await store.complete_many([Outcome.succeeded(claims[0], "two")]) == [True]
        done = await get_job(store, new.id)
        assert done.status is JobStatus.SUCCEEDED
        assert [o.result for o in done.operations] == ["one", "two"]

    async def test_job_status_failed_and_retrying(self, store: Store) -> None:
        """A retrying operation keeps its job ``running``; once every operation is final,
        one ``dead`` operation makes the job ``failed`` (even if others were cancelled)."""
        retried, failed = job("t.a"), job("t.a", "t.b")
        await insert(store, retried, failed)
        claims = {c.job_id: c for c in await claim_all(store, limit=2)}
        assert sorted(claims) == sorted([retried.id, failed.id])
        boom = ErrorInfo("Boom", "it broke")
        assert await store.complete_many([
            Outcome.retry(claims[retried.id], boom, 3600.0),
            Outcome.dead(claims[failed.id], boom),
        ]) == [True, True]
        assert (await get_job(store, retried.id)).status is JobStatus.RUNNING
        assert (await get_job(store, failed.id)).status is JobStatus.RUNNING
        [claim_b] = await claim_all(store)
        assert claim_b.task == "t.b"
        assert await store.cancel_jobs([failed.id]) == [failed.id]
        assert await store.complete_many([Outcome.cancelled(claim_b)]) == [True]
        assert (await get_job(store, failed.id)).status is JobStatus.FAILED

    async def test_jobs_of_one_operation_end_as_their_operation(self, store: Store) -> None:
        """A job of one operation takes the status its outcome leaves: ``succeeded``,
        ``failed`` (dead), ``cancelled``, and ``running`` while it retries; then the
        retried attempt's end."""
        ok, dead, cancelled, retried = (job("t.a") for _ in range(4))
        await insert(store, ok, dead, cancelled, retried)
        claims = {c.job_id: c for c in await claim_all(store, limit=4)}
        assert await store.cancel_jobs([cancelled.id]) == [cancelled.id]
        boom = ErrorInfo("Boom", "it broke")
        assert await store.complete_many([
            Outcome.succeeded(claims[ok.id], 1), Outcome.dead(claims[dead.id], boom),
            Outcome.cancelled(claims[cancelled.id]), Outcome.retry(claims[retried.id], boom, 0.0),
        ]) == [True] * 4
        statuses = {j.id: j.status for j in await store.get_jobs([ok.id, dead.id, cancelled.id,
                                                                  retried.id])}
        assert statuses == {ok.id: JobStatus.SUCCEEDED, dead.id: JobStatus.FAILED,
                            cancelled.id: JobStatus.CANCELLED, retried.id: JobStatus.RUNNING}
        [again] = await claim_all(store)
        assert again.job_id == retried.id and again.attempt == 2
        assert await store.complete_many([Outcome.dead(again, boom)]) == [True]
        assert (await get_job(store, retried.id)).status is JobStatus.FAILED

    # cancel ----------------------------------------------------------------------------
    async def test_cancel_waiting_operations(self, store: Store) -> None:
        """Waiting operations (queued, scheduled) become ``cancelled`` at once, with
        ``finished_at``; nothing of the job can be claimed afterwards."""
        new = job("t.a", op("t.b", delay_s=3600.0))
        await insert(store, new)
        before = await store.now()
        assert await store.cancel_jobs([new.id]) == [new.id]
        got = await get_job(store, new.id)
        assert got.status is JobStatus.CANCELLED
        for o in got.operations:
            assert o.status is OpStatus.CANCELLED
            assert o.finished_at is not None and o.finished_at >= before - TOL
        assert await claim_all(store) == []

    async def test_cancel_flags_running_operations(self, store: Store) -> None:
        """A running operation stays ``running`` with ``cancel_requested``, which the
        heartbeat reports; the worker then records ``cancelled``."""
        new = job("t.a", "t.b")
        await insert(store, new)
        [claim] = await claim_all(store, limit=1)
        assert await store.cancel_jobs([new.id]) == [new.id]
        running, waiting = await operations(store, new.id)
        assert (running.status, running.cancel_requested) == (OpStatus.RUNNING, True)
        assert waiting.status is OpStatus.CANCELLED
        [state] = await store.extend_leases([Lease(claim.op_id, claim.lease_token)], LONG_LEASE_S)
        assert (state.op_id, state.held, state.cancel_requested) == (claim.op_id, True, True)
        assert (await get_job(store, new.id)).status is JobStatus.RUNNING
        assert await store.complete_many([Outcome.cancelled(claim)]) == [True]
        assert (await operation(store, claim.op_id)).status is OpStatus.CANCELLED
        assert (await get_job(store, new.id)).status is JobStatus.CANCELLED

    async def test_cancel_keeps_finished_work_and_reports_existing_jobs(self, store: Store) -> None:
        """Finished operations keep their state; the answer lists the jobs that exist (for
        the tenant), finished or not; a partly succeeded job ends ``cancelled``."""
        done, partial, other = job("t.a"), job("t.a", "t.b", "t.c"), job(tenant="b")
        await insert(store, done, partial, other)
        claims = await claim_all(store, limit=2)
        assert [c.job_id for c in claims] == [done.id, partial.id]
        assert await store.complete_many(
            [Outcome.succeeded(claims[0], 1), Outcome.succeeded(claims[1], 2)]
        ) == [True, True]
        answer = await store.cancel_jobs([done.id, partial.id, other.id, "f" * 32],
                                         tenant="default")
        assert sorted(answer) == sorted([done.id, partial.id])
        assert (await get_job(store, done.id)).status is JobStatus.SUCCEEDED
        got = await get_job(store, partial.id)
        assert [o.status for o in got.operations] == [
            OpStatus.SUCCEEDED, OpStatus.CANCELLED, OpStatus.CANCELLED]
        assert got.status is JobStatus.CANCELLED
        assert (await get_job(store, other.id)).status is JobStatus.QUEUED

    # dead-letter queue and replay ------------------------------------------------------
    async def _dead(self, store: Store, *jobs: NewJob) -> list[str]:
        """Insert ``jobs`` and send every operation to ``dead``; their op ids by seq."""
        await insert(store, *jobs)
        queues = {j.queue for j in jobs}
        claims = await claim_all(store, queues)
        error = ErrorInfo("Boom", "failed for good", "Traceback (most recent call last): ...")
        assert all(await store.complete_many([Outcome.dead(c, error) for c in claims]))
        return [o.id for o in await operations(store, *(j.id for j in jobs))]

    async def test_dead_letters_listed_and_replayed_by_ids(self, store: Store) -> None:
        """``list_operations(status=dead)`` is the dead-letter queue; ``replay`` by ids moves
        exactly those back to ``queued`` with attempts, result, error, start and finish
        cleared; they are claimable again as attempt 1."""
        ids = await self._dead(store, job("t.a"), job("t.b"), job("t.c"))
        dead = await store.list_operations(OpFilter(status=OpStatus.DEAD))
        assert [o.id for o in dead] == ids
        assert dead[0].error == ErrorInfo("Boom", "failed for good",
                                          "Traceback (most recent call last): ...")
        assert dead[0].finished_at is not None and dead[0].attempts == 1
        before = await store.now()
        assert await store.replay(OpFilter(ids=(ids[1],))) == [ids[1]]
        back = await operation(store, ids[1])
        assert (back.status, back.attempts, back.result, back.error) == (
            OpStatus.QUEUED, 0, None, None)
        assert (back.started_at, back.finished_at) == (None, None)
        assert back.run_at >= before - TOL
        assert (await get_job(store, back.job_id)).status is JobStatus.QUEUED
        still = await store.list_operations(OpFilter(status=OpStatus.DEAD))
        assert [o.id for o in still] == [ids[0], ids[2]]
        [claim] = await claim_all(store)
        assert (claim.op_id, claim.attempt) == (ids[1], 1)

    async def test_replay_by_filter(self, store: Store) -> None:
        """``replay`` by queue, task or job moves every matching dead operation and no other."""
        ids = await self._dead(store, job("t.x", queue="qa"), job("t.y", queue="qa"),
                               job("t.x", queue="qb"), job("t.y", queue="qb"))
        assert sorted(await store.replay(OpFilter(queue="qb", task="t.y"))) == [ids[3]]
        assert sorted(await store.replay(OpFilter(task="t.x"))) == sorted([ids[0], ids[2]])
        job_of_1 = (await operation(store, ids[1])).job_id
        assert await store.replay(OpFilter(queue="qb")) == []
        assert await store.replay(OpFilter(job_id=job_of_1)) == [ids[1]]
        assert await store.list_operations(OpFilter(status=OpStatus.DEAD)) == []
        assert len(await claim_all(store, ("qa", "qb"))) == 4

    async def test_replay_touches_only_dead_operations(self, store: Store) -> None:
        """Queued, running and succeeded operations are never replayed."""
        new = job("t.a", "t.b", "t.c")
        await insert(store, new)
        claims = await claim_all(store, limit=2)
        assert await store.complete_many([Outcome.succeeded(claims[0], None)]) == [True]
        before = await operations(store, new.id)
        assert await store.replay(OpFilter(ids=tuple(o.id for o in before))) == []
        assert await store.replay(OpFilter()) == []
        assert await operations(store, new.id) == before

    # tenant isolation ------------------------------------------------------------------
    async def test_tenants_are_isolated(self, store: Store) -> None:
        """With a tenant given, reads, cancel and replay see only that tenant's jobs."""
        [dead_a] = await self._dead(store, job("t.a", tenant="a"))
        [dead_b] = await self._dead(store, job("t.a", tenant="b"))
        waiting = job("t.w", tenant="a")
        await insert(store, waiting)
        assert await store.cancel_jobs([waiting.id], tenant="b") == []
        assert (await get_job(store, waiting.id)).status is JobStatus.QUEUED
        assert {j.tenant for j in await store.list_jobs(JobFilter(tenant="b"))} == {"b"}
        listed = await store.list_operations(OpFilter(tenant="b"))
        assert [o.id for o in listed] == [dead_b]
        assert await store.replay(OpFilter(tenant="b", ids=(dead_a, dead_b))) == [dead_b]
        assert (await operation(store, dead_a)).status is OpStatus.DEAD
        stats_b = await store.stats(tenant="b")
        assert [(s.queue, s.counts["queued"], s.counts["dead"]) for s in stats_b] == [
            ("default", 1, 0)]

    # stats -----------------------------------------------------------------------------
    async def test_stats(self, store: Store) -> None:
        """Per queue (queues with operations only, by name): a count for every state,
        the age of the oldest due waiting operation, and finishes in the last 1 and 5
        minutes (``failed`` counts ``dead`` ones)."""
        await insert(store, job("t.a", "t.b", "t.c", "t.d", queue="s1"),
                     job(op("t.later", delay_s=3600.0), queue="s2"))
        claims = await store.claim(["s1"], "w1", 3, LONG_LEASE_S)
        assert len(claims) == 3
        assert await store.complete_many([
            Outcome.succeeded(claims[0], 1),
            Outcome.dead(claims[1], ErrorInfo("Boom", "x")),
        ]) == [True, True]
        stats = {s.queue: s for s in await store.stats()}
        assert sorted(stats) == ["s1", "s2"]
        s1, s2 = stats["s1"], stats["s2"]
        assert s1.counts == {"scheduled": 0, "queued": 1, "running": 1, "retrying": 0,
                             "succeeded": 1, "dead": 1, "cancelled": 0}
        assert s1.oldest_ready_age_s is not None and 0.0 <= s1.oldest_ready_age_s < 60
        assert (s1.finished_last_1m, s1.finished_last_5m, s1.failed_last_5m) == (2, 2, 1)
        assert s2.counts == {s.value: int(s is OpStatus.SCHEDULED) for s in OpStatus}
        assert s2.oldest_ready_age_s is None
        assert (s2.finished_last_1m, s2.finished_last_5m, s2.failed_last_5m) == (0, 0, 0)
        assert await store.stats(tenant="nobody") == []

    async def test_stats_counts_follow_every_change_of_state(self, store: Store) -> None:
        """The counts agree with the operations themselves after every kind of change
        (outcomes of each kind, cancels of waiting and of running operations, expired
        leases, replays), for every tenant and for each one: a store that keeps running
        totals must keep them in step on every path."""
        ends = job("t.ok", "t.bad", "t.again", "t.waits", queue="ends")
        other = job("t.ok", queue="ends", tenant="other")
        waiting, retried, released, stopped = (job("t.c", queue="cancel") for _ in range(4))
        spent = job(op("t.l", max_attempts=1), queue="lease")
        spare = job(op("t.l", max_attempts=3), queue="lease")
        await insert(store, ends, other, waiting, retried, released, stopped, spent, spare)
        boom = ErrorInfo("Boom", "x")

        ok, bad, again = await store.claim(["ends"], "w1", 3, LONG_LEASE_S)
        [theirs] = [c for c in await store.claim(["ends"], "w2", 2, LONG_LEASE_S)
                    if c.job_id == other.id]
        assert await store.complete_many([
            Outcome.succeeded(ok, 1), Outcome.dead(bad, boom),
            Outcome.retry(again, boom, 3600.0), Outcome.succeeded(theirs, 2),
        ]) == [True] * 4
        running = {c.job_id: c for c in await store.claim(["cancel"], "w1", 4, LONG_LEASE_S)}
        assert len(running) == 4
        await store.release([Lease(running[waiting.id].op_id,
                                   running[waiting.id].lease_token)])  # waiting again
        await store.cancel_jobs([waiting.id, retried.id, released.id, stopped.id])
        assert await store.complete_many([
            Outcome.retry(running[retried.id], boom, 1.0),  # ends cancelled: it was asked
            Outcome.cancelled(running[stopped.id]),
        ]) == [True, True]
        await store.release([Lease(running[released.id].op_id,
                                   running[released.id].lease_token)])
        expiring = await store.claim(["lease"], "w1", 2, SHORT_LEASE_S)
        assert len(expiring) == 2
        await rescue_until(store, [c.op_id for c in expiring])
        assert len(await store.replay(OpFilter(queue="ends"))) == 1
        [replayed] = await store.claim(["ends"], "w1", 1, LONG_LEASE_S)
        assert await store.complete_many([Outcome.succeeded(replayed, 3)]) == [True]

        for tenant in (None, "default", "other", "nobody"):
            truth: dict[str, dict[str, int]] = {}
            for o in await store.list_operations(OpFilter(tenant=tenant, limit=1000)):
                truth.setdefault(o.queue, {s.value: 0 for s in OpStatus})[o.status.value] += 1
            counted = {s.queue: s.counts for s in await store.stats(tenant=tenant)}
            assert counted == truth, tenant
        every = {s.queue: s.counts for s in await store.stats()}
        assert every["cancel"]["cancelled"] == 4 and every["lease"]["dead"] == 1
        assert every["ends"]["succeeded"] == 3 and every["ends"]["retrying"] == 1

    async def test_ready_depths_count_queued_per_queue_up_to_cap(self, store: Store) -> None:
        """``queued`` operations per queue, all tenants, at most ``cap`` each; a queue
        whose waiting operations are all delayed is there with 0; running and finished
        operations do not count, nor do queues with nothing waiting."""
        await insert(store, job(*["t.a"] * 5, queue="deep"),
                     job("t.a", "t.a", queue="shallow", tenant="other"),
                     job(op("t.later", delay_s=3600.0), queue="later"),
                     job("t.a", queue="done"))
        [done] = await store.claim(["done"], "w1", 1, LONG_LEASE_S)
        assert await store.complete_many([Outcome.succeeded(done, None)]) == [True]
        [running] = await store.claim(["shallow"], "w1", 1, LONG_LEASE_S)
        assert running.queue == "shallow"
        assert await store.ready_depths(3) == {"deep": 3, "shallow": 1, "later": 0}
        assert await store.ready_depths(100) == {"deep": 5, "shallow": 1, "later": 0}

    # task registry ---------------------------------------------------------------------
    async def test_tasks_round_trip_and_update(self, store: Store) -> None:
        """``upsert_tasks`` stores every field; upserting a name again replaces it;
        ``list_tasks`` returns them by name."""
        schema = {"type": "object", "properties": {"a": {"type": "integer"}},
                  "required": ["a"], "additionalProperties": False}
        b = TaskInfo("t.b", "default", schema, "process", 3, None, 0, "Does b.")
        a = TaskInfo("t.a", "fast", {}, "async", 1, 2.5, -5, "")
        await store.upsert_tasks([b, a])
        assert await store.list_tasks() == [a, b]
        b2 = TaskInfo("t.b", "slow", {"type": "object"}, "async", 7, 60.0, 10, "Does b, v2.")
        await store.upsert_tasks([b2])
        assert await store.list_tasks() == [a, b2]
        await store.upsert_tasks([])
        assert await store.list_tasks() == [a, b2]
