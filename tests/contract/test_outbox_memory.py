"""The in-memory store with the outbox passes the outbox conformance suite (so unit
tests of log transports and the relay can rely on it), and still the store suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conveyor.store.memory import MemoryOutboxStore
from conveyor.testing.outbox_contract import OutboxContract
from conveyor.testing.store_contract import StoreContract


@pytest.fixture
async def store() -> AsyncIterator[MemoryOutboxStore]:
    instance = MemoryOutboxStore()
    await instance.open()
    await instance.enable_outbox()
    yield instance
    await instance.close()


class TestMemoryOutbox(OutboxContract):
    pass


class TestMemoryOutboxIsStillAStore(StoreContract):
    """Writing outbox rows changes nothing the store port promises."""
