"""The store-backed transport on the in-memory store passes the transport suite."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conveyor.store.base import Store
from conveyor.store.memory import MemoryStore
from conveyor.testing.transport_contract import TransportContract, store_fixture
from conveyor.transport.base import Transport
from conveyor.transport.store import StoreTransport

store = store_fixture(lambda tmp_path: MemoryStore())


@pytest.fixture
def transport_factory() -> Callable[[Store], Transport]:
    # A slow poll: the wake case must be ended by wake(), not by the poll.
    return lambda store: StoreTransport(store, poll_s=5.0)


class TestStoreTransportOnMemory(TransportContract):
    pass
