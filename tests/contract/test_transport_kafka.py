"""The Kafka transport (real broker, PostgreSQL store with its outbox, a relay running
alongside) passes the transport conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from conveyor.store.base import Store
from conveyor.store.postgres import PostgresStore
from conveyor.testing.transport_contract import TransportContract
from conveyor.transport.base import Transport
from tests.support.kafka import RelayedTransport, settings
from tests.support.pg_fixtures import pg_database, pg_store, pg_url

__all__ = ["pg_database", "pg_store", "pg_url"]


@pytest.fixture
async def store(pg_store: PostgresStore) -> AsyncIterator[Store]:
    await pg_store.enable_outbox()
    yield pg_store


@pytest.fixture
def transport_factory() -> Callable[[Store], Transport]:
    kafka = settings()  # one prefix per test: its own topics and consumer groups
    return lambda store: RelayedTransport(store, kafka)  # type: ignore[arg-type]


class TestKafkaTransport(TransportContract):
    pass
