"""Store conformance, part 2: reads, job status, cancel, replay, tenants, stats and the
task registry (submission is part 1, :mod:`.store_contract_submit`). Run through
:class:`conveyor.testing.store_contract.StoreContract`.
"""

from __future__ import annotations

import time

from ..model import (
    ErrorInfo,
    JobFilter,
    JobStatus,
    Lease,
    NewJob,
    OpFilter,
    OpStatus,
    Outcome,
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
