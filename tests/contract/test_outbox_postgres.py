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


async def test_compaction_reclaims_the_rows_the_relay_deleted(store: PostgresStore) -> None:
    """Published rows are deleted, but stay in the table and its indexes as dead rows
    until a vacuum; an empty outbox then still costs a claim every page they fill.
    ``compact_outbox`` removes them: the claim reads a few pages again."""
    from conveyor.store.base import OutboxCompaction
    from conveyor.testing.contract_support import insert, job

    assert isinstance(store, OutboxCompaction)
    for _ in range(4):
        await insert(store, job(*["t.a"] * 500))
    while entries := await store.claim_outbox(500, 30.0):
        await store.mark_published([e.id for e in entries])
    assert await store.outbox_backlog() == {}

    def cost() -> tuple[int, int]:
        """The outbox's size in pages, and the pages one claim of due rows reads."""
        with psycopg.connect(store.url, autocommit=True) as conn:
            [(pages,)] = conn.execute(
                "SELECT pg_relation_size('outbox') / current_setting('block_size')::int"
            ).fetchall()
            [(plan,)] = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT id FROM outbox "
                "WHERE due_at <= now() AND (claimed_until IS NULL OR claimed_until < now()) "
                "ORDER BY id LIMIT 500").fetchall()
            node = plan[0]["Plan"]
            return pages, node["Shared Hit Blocks"] + node["Shared Read Blocks"]

    pages, read = cost()
    assert pages >= 10 and read >= 10, (pages, read)
    await store.compact_outbox()
    pages, read = cost()
    assert pages == 0 and read <= 3, (pages, read)
    await insert(store, job("t.b"))  # and the outbox works on
    assert await store.outbox_backlog() == {"default": 1}
