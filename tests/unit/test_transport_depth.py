"""Backpressure's depth from a log transport: consumer lag plus unpublished outbox rows,
per queue, for the queues the store's source found in the same refresh; one refresh reads
the store's ready depths once, never its full statistics (pure logic over a memory store
and canned transport figures)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from conveyor.backpressure import Backpressure, store_ready_depth
from conveyor.config import Config
from conveyor.model import NewJob, NewOperation, QueueStats
from conveyor.service import Service, TaskCatalog
from conveyor.store.memory import MemoryStore
from conveyor.wiring import transport_depth


class CountingStore(MemoryStore):
    """Counts how often the ready depths are read; the full statistics must not be."""

    def __init__(self) -> None:
        super().__init__()
        self.depth_reads = 0

    async def ready_depths(self, cap: int) -> dict[str, int]:
        self.depth_reads += 1
        return await super().ready_depths(cap)

    async def stats(self, tenant: str | None = None) -> list[QueueStats]:
        raise AssertionError("backpressure reads ready depths, not the whole statistics")


def _service(figures: dict[str, Any] | None) -> Service:
    store = CountingStore()
    asked: list[Sequence[str]] = []

    async def stats(queues: Sequence[str]) -> dict[str, Any]:
        asked.append(list(queues))
        if figures is None:
            raise RuntimeError("Kafka is down")
        return figures

    service = Service(store, TaskCatalog(store, None), Config().limits,
                      transport_stats=stats)
    service.asked = asked  # type: ignore[attr-defined]
    return service


async def _fill(service: Service) -> None:
    await service.store.insert_jobs([
        NewJob((NewOperation("sys.noop", {}),), queue=q) for q in ("a", "a", "b")])


def _backpressure_depths(service: Service, refreshes: int = 1) -> dict[str, int]:
    """Depths as the API's backpressure sees them: the store's source, then the
    transport's, re-read ``refreshes`` times."""

    async def run() -> dict[str, int]:
        await _fill(service)
        source = transport_depth(service)
        assert source is not None
        backpressure = Backpressure({"*": (10, 100)},
                                    [store_ready_depth(service.store, 101), source],
                                    refresh_s=1e-9)
        found: dict[str, int] = {}
        for _ in range(refreshes):
            found = dict(await backpressure.depths())
        return found

    return asyncio.run(run())


def test_lag_and_outbox_backlog_add_up_per_queue() -> None:
    figures = {"kind": "kafka", "outbox_backlog": {"a": 5, "b": 0},
               "queues": {"a": {"lag": 40, "partitions": []}}}
    service = _service(figures)
    # a: lag 40 + backlog 5 beats its 2 ready operations; b: 1 ready, nothing in Kafka
    assert _backpressure_depths(service) == {"a": 45, "b": 1}
    assert service.asked == [["a", "b"]]  # type: ignore[attr-defined]


def test_each_refresh_reads_the_store_depths_once() -> None:
    service = _service({"kind": "kafka", "outbox_backlog": {}, "queues": {}})
    _backpressure_depths(service, refreshes=3)
    assert service.store.depth_reads == 3  # type: ignore[attr-defined]
    assert len(service.asked) == 3  # type: ignore[attr-defined]


def test_an_unreachable_transport_adds_nothing() -> None:
    assert _backpressure_depths(_service(None)) == {"a": 2, "b": 1}


def test_no_queue_known_asks_the_transport_nothing() -> None:
    service = _service({"kind": "kafka", "outbox_backlog": {"a": 9}, "queues": {}})
    source = transport_depth(service)
    assert source is not None
    assert asyncio.run(source({})) == {}
    assert service.asked == []  # type: ignore[attr-defined]


def test_the_store_transport_has_no_extra_source() -> None:
    store = MemoryStore()
    assert transport_depth(Service(store, TaskCatalog(store, None))) is None
