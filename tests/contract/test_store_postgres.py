"""The PostgreSQL store passes the store conformance suite (against a real server), with
plain transactions (the default) and pipelined ones (``postgres_pipeline``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conveyor.store.base import Store
from conveyor.store.postgres import PostgresStore
from conveyor.testing.store_contract import StoreContract
from tests.support.pg_fixtures import pg_database, pg_store, pg_url, pipelined_pg_store

__all__ = ["pg_database", "pg_store", "pg_url", "pipelined_pg_store"]


@pytest.fixture
async def store(pg_store: PostgresStore) -> AsyncIterator[Store]:
    yield pg_store


class TestPostgresStore(StoreContract):
    async def reopen(self, store: Store) -> Store:
        assert isinstance(store, PostgresStore)
        fresh = PostgresStore(store.url, pipeline=store.pipeline)
        await fresh.open()
        return fresh


class TestPipelinedPostgresStore(TestPostgresStore):
    """Pipelined transactions (statements sent before earlier results are read) keep
    every promise of the port."""

    @pytest.fixture
    async def store(self, pipelined_pg_store: PostgresStore) -> AsyncIterator[Store]:
        yield pipelined_pg_store
