"""Store conformance, part 1: submission. Every field stored as given, answers in input
order, batches all or none, idempotency keys. Run through
:class:`conveyor.testing.store_contract.StoreContract`.
"""

from __future__ import annotations

import asyncio

import pytest

from ..model import JobFilter, JobStatus, NewJob, OpFilter, OpStatus, Submitted
from ..store.base import Store
from .contract_support import TIME_TOLERANCE_S, get_job, insert, job, op, operations

TOL = TIME_TOLERANCE_S


class StoreSubmitCases:
    """Needs a ``store`` fixture: an opened, migrated, empty store."""

    async def reopen(self, store: Store) -> Store:
        """Close ``store`` and return a new instance on the same data (adapters with durable
        storage override this so read-back is checked across connections); the default
        returns ``store`` itself."""
        return store

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
