"""Which queues the relay's reconciliation looks at when nobody names them: those with
operations waiting, those a live worker consumes, those with outbox rows; found without
the full per-queue statistics (which read every recently finished operation)."""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.model import Outcome, QueueStats, WorkerInfo
from conveyor.reconcile import Reconciler, TransportStats
from conveyor.store.memory import MemoryOutboxStore
from conveyor.testing.contract_support import claim_all, insert, job
from conveyor.transport.kafka.lag import PartitionLag


class NoStatsStore(MemoryOutboxStore):
    async def stats(self, tenant: str | None = None) -> list[QueueStats]:
        raise AssertionError("the full statistics were read for the queue names")


class RecordingLag:
    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def measure(self, queues: Sequence[str]) -> list[PartitionLag]:
        self.asked.append(list(queues))
        return [PartitionLag(q, 0, 10, 10, 0) for q in queues]

    def close(self) -> None:
        pass


def _worker(worker_id: str, queues: tuple[str, ...], status: str) -> WorkerInfo:
    return WorkerInfo(id=worker_id, host="h", pid=1, queues=queues, concurrency=1,
                      version="0", config_hash="x", started_at=0.0, status=status)


async def test_queues_looked_at_without_the_full_statistics() -> None:
    store = NoStatsStore()
    await store.enable_outbox()
    await insert(store, job("t.a", queue="waiting"))
    await insert(store, job("t.a", queue="ended"))
    [claim] = await claim_all(store, ["ended"])
    assert await store.complete_many([Outcome.succeeded(claim, None)]) == [True]
    published = [e.id for e in await store.claim_outbox(10, 30.0) if e.queue == "ended"]
    await store.mark_published(published)
    await store.upsert_workers([_worker("w1", ("default",), "live"),
                                _worker("w2", ("emails",), "gone")])
    lag = RecordingLag()

    stats = await TransportStats(store, store, lag).read()

    assert lag.asked == [["default", "waiting"]], (
        "queues with waiting operations or a live worker; not those with only ended ones, "
        "nor those only gone workers consumed")
    assert stats["outbox_backlog"] == {"default": 0, "waiting": 1}
    assert set(stats["queues"]) == {"default", "waiting"}
    assert await Reconciler(store, store, lag, older_than_s=3600).run_once() == []
    assert lag.asked[-1] == ["default", "waiting"]


async def test_the_callers_queues_are_the_ones_measured() -> None:
    store = NoStatsStore()
    lag = RecordingLag()
    stats = await TransportStats(store, store, lag).read(["a", "b"])
    assert lag.asked == [["a", "b"]]
    assert stats["outbox_backlog"] == {"a": 0, "b": 0}
