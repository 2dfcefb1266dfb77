"""The PostgreSQL store's outbox (triggers, relay claims, delivered claims) passes the
outbox conformance suite, and with the outbox enabled still the store suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from conveyor.store.base import Store
from conveyor.store.postgres import PostgresStore
from conveyor.store.postgres.outbox import OUTBOX_SQL
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


async def test_relay_bookkeeping_commits_without_waiting_for_the_flush(
        store: PostgresStore) -> None:
    """The relay's claim and its delete are one statement each, which turns
    synchronous_commit off for its own transaction only (no transaction block needed)."""
    from conveyor.testing.contract_support import insert, job

    await insert(store, job("t.a"))
    with psycopg.connect(store.url) as conn:  # a transaction block, to look inside it
        claimed = conn.execute(OUTBOX_SQL["outbox_claim"],
                               {"limit": 10, "lease_s": 30.0}).fetchall()
        assert len(claimed) == 1
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
        conn.commit()
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        deleted = conn.execute(OUTBOX_SQL["outbox_published"], {"ids": [claimed[0][0]]})
        assert deleted.rowcount == 1
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
        conn.commit()
    assert await store.outbox_backlog() == {}
