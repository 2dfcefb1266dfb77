"""Backpressure's depth from a log transport: consumer lag plus unpublished outbox rows,
per queue (pure logic over a memory store and canned transport figures)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from conveyor.config import Config
from conveyor.model import NewJob, NewOperation
from conveyor.service import Service, TaskCatalog
from conveyor.store.memory import MemoryStore
from conveyor.wiring import transport_depth


def _service(figures: dict[str, Any] | None) -> Service:
    store = MemoryStore()

    async def stats(queues: Sequence[str]) -> dict[str, Any]:
        if figures is None:
            raise RuntimeError("Kafka is down")
        return figures

    return Service(store, TaskCatalog(store, None), Config().limits, transport_stats=stats)


def _depth(service: Service) -> dict[str, int]:
    async def run() -> dict[str, int]:
        await service.store.insert_jobs([
            NewJob((NewOperation("sys.noop", {}),), queue=q) for q in ("a", "b")])
        source = transport_depth(service)
        assert source is not None
        return dict(await source())

    return asyncio.run(run())


def test_lag_and_outbox_backlog_add_up_per_queue() -> None:
    figures = {"kind": "kafka", "outbox_backlog": {"a": 5, "b": 0},
               "queues": {"a": {"lag": 40, "partitions": []}}}
    assert _depth(_service(figures)) == {"a": 45, "b": 0}


def test_an_unreachable_transport_adds_nothing() -> None:
    assert _depth(_service(None)) == {"a": 0, "b": 0}


def test_the_store_transport_has_no_extra_source() -> None:
    store = MemoryStore()
    assert transport_depth(Service(store, TaskCatalog(store, None))) is None
