"""The store conformance suite: one suite, every adapter runs it (like River's
``riverdrivertest``).

An adapter's test module provides a ``store`` fixture (opened, migrated, **empty**) and
subclasses :class:`StoreContract`::

    from conveyor.store.memory import MemoryStore
    from conveyor.testing.store_contract import StoreContract, store_fixture

    store = store_fixture(lambda tmp_path: MemoryStore())

    class TestMemoryStore(StoreContract):
        pass

Adapters with durable storage also override :meth:`StoreContract.reopen` so read-back is
checked through a fresh connection. The suite uses real time for leases and schedules
(a database has its own clock) and waits by polling the store, so it runs in a few
seconds. The cases live in :mod:`.store_contract_submit`, :mod:`.store_contract_data` and
:mod:`.store_contract_leases` (and ``_workers``, ``_keys``);
their docstrings state the guarantee each one checks.
"""

from __future__ import annotations

import pytest

# The cases are imported only from here, so pytest can rewrite their asserts (values in
# failure messages) whichever test module imports the suite first.
pytest.register_assert_rewrite(
    "conveyor.testing.store_contract_submit", "conveyor.testing.store_contract_data",
    "conveyor.testing.store_contract_leases",
    "conveyor.testing.store_contract_workers", "conveyor.testing.store_contract_keys",
)

from .contract_support import (  # noqa: E402
    LONG_LEASE_S,
    SHORT_LEASE_S,
    claim_all,
    eventually,
    get_job,
    insert,
    job,
    op,
    operation,
    operations,
    rescue_until,
    store_fixture,
)
from .store_contract_data import StoreDataCases  # noqa: E402
from .store_contract_keys import StoreKeyCases  # noqa: E402
from .store_contract_leases import StoreLeaseCases  # noqa: E402
from .store_contract_submit import StoreSubmitCases  # noqa: E402
from .store_contract_workers import StoreWorkerCases  # noqa: E402


class StoreContract(StoreSubmitCases, StoreDataCases, StoreLeaseCases, StoreWorkerCases,
                    StoreKeyCases):
    """Every guarantee of :class:`conveyor.store.base.Store`, as pytest test methods.

    Subclass it in a ``Test*`` class next to a ``store`` fixture; override ``reopen`` when
    the adapter can open its data again from a new instance.
    """


__all__ = [
    "LONG_LEASE_S",
    "SHORT_LEASE_S",
    "StoreContract",
    "StoreKeyCases",
    "claim_all",
    "eventually",
    "get_job",
    "insert",
    "job",
    "op",
    "operation",
    "operations",
    "rescue_until",
    "store_fixture",
]
