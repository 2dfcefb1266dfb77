"""The transport conformance suite: every transport adapter runs it.

An adapter's test module provides two fixtures, ``store`` (opened, migrated, empty) and
``transport_factory`` (``store -> Transport``, not started), and subclasses
:class:`TransportContract`::

    import pytest
    from conveyor.store.memory import MemoryStore
    from conveyor.testing.transport_contract import TransportContract, store_fixture
    from conveyor.transport.store import StoreTransport

    store = store_fixture(lambda tmp_path: MemoryStore())

    @pytest.fixture
    def transport_factory():
        return lambda store: StoreTransport(store, poll_s=5.0)

    class TestStoreTransport(TransportContract):
        pass

Give the transport a slow background poll where it has one: the ``wake`` case then
proves that ``wake()`` (not the poll) ended the wait.
"""

from __future__ import annotations

import pytest

# Imported only from here, so pytest rewrites its asserts whoever imports the suite first.
pytest.register_assert_rewrite("conveyor.testing.transport_contract_cases")

from .contract_support import store_fixture  # noqa: E402
from .transport_contract_cases import Connect, TransportCases, receive_until  # noqa: E402


class TransportContract(TransportCases):
    """Every guarantee of :class:`conveyor.transport.base.Transport`, as pytest tests."""


__all__ = ["Connect", "TransportContract", "receive_until", "store_fixture"]
