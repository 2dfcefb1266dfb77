"""The store-backed transport on PostgreSQL passes the transport conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from conveyor.store.base import Store
from conveyor.store.postgres import PostgresStore
from conveyor.testing.transport_contract import TransportContract
from conveyor.transport.base import Transport
from conveyor.transport.store import StoreTransport
from tests.support.pg_fixtures import pg_database, pg_store, pg_url

__all__ = ["pg_database", "pg_store", "pg_url"]


@pytest.fixture
async def store(pg_store: PostgresStore) -> AsyncIterator[Store]:
    yield pg_store


@pytest.fixture
def transport_factory() -> Callable[[Store], Transport]:
    return lambda store: StoreTransport(store, poll_s=5.0)


class TestStoreTransportOnPostgres(TransportContract):
    pass
