"""The store-backed transport on SQLite passes the transport conformance suite."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conveyor.store.base import Store
from conveyor.store.sqlite import SQLiteStore
from conveyor.testing.transport_contract import TransportContract, store_fixture
from conveyor.transport.base import Transport
from conveyor.transport.store import StoreTransport

store = store_fixture(lambda tmp_path: SQLiteStore(tmp_path / "transport.db"))


@pytest.fixture
def transport_factory() -> Callable[[Store], Transport]:
    return lambda store: StoreTransport(store, poll_s=5.0)


class TestStoreTransportOnSQLite(TransportContract):
    pass
