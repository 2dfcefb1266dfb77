"""The PostgreSQL store's outbox (triggers, relay claims, delivered claims) passes the
outbox conformance suite, and with the outbox enabled still the store suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conveyor.store.base import Store
from conveyor.store.postgres import PostgresStore
from conveyor.testing.outbox_contract import OutboxContract
from conveyor.testing.store_contract import StoreContract
from tests.support.pg_fixtures import pg_database, pg_store, pg_url, pipelined_pg_store

__all__ = ["pg_database", "pg_store", "pg_url", "pipelined_pg_store"]


@pytest.fixture
async def store(pg_store: PostgresStore) -> AsyncIterator[PostgresStore]:
    await pg_store.enable_outbox()
    yield pg_store


class TestPostgresOutbox(OutboxContract):
    pass


class TestPipelinedPostgresOutbox(OutboxContract):
    """The same promises with pipelined transactions (``postgres_pipeline``)."""

    @pytest.fixture
    async def store(self, pipelined_pg_store: PostgresStore) -> AsyncIterator[PostgresStore]:
        await pipelined_pg_store.enable_outbox()
        yield pipelined_pg_store


class TestPostgresWithOutboxIsStillAStore(StoreContract):
    """The triggers change nothing the store port promises."""

    async def reopen(self, store: Store) -> Store:
        assert isinstance(store, PostgresStore)
        fresh = PostgresStore(store.url)
        await fresh.open()
        return fresh


async def test_disabled_until_enabled_then_backfilled(pg_store: PostgresStore) -> None:
    """The store tier writes no rows; enabling gives waiting operations theirs."""
    from conveyor.testing.contract_support import insert, job

    await insert(pg_store, job("t.a", "t.b"))
    assert await pg_store.outbox_backlog() == {}
    await pg_store.enable_outbox()
    assert await pg_store.outbox_backlog() == {"default": 2}
    await insert(pg_store, job("t.c"))
    assert await pg_store.outbox_backlog() == {"default": 3}
