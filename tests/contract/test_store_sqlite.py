"""The SQLite store passes the store conformance suite."""

from __future__ import annotations

from conveyor.store.sqlite import SQLiteStore
from conveyor.testing.store_contract import StoreContract, store_fixture

store = store_fixture(lambda tmp_path: SQLiteStore(tmp_path / "contract.db"))


class TestSQLiteStore(StoreContract):
    pass
