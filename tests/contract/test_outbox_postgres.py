"""The PostgreSQL store's outbox (triggers, relay claims, delivered claims) passes the
outbox conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conveyor.store.postgres import PostgresStore
from conveyor.testing.outbox_contract import OutboxContract
from tests.support.pg_fixtures import pg_database, pg_store, pg_url

__all__ = ["pg_database", "pg_store", "pg_url"]


@pytest.fixture
async def store(pg_store: PostgresStore) -> AsyncIterator[PostgresStore]:
    await pg_store.enable_outbox()
    yield pg_store


class TestPostgresOutbox(OutboxContract):
    pass


async def test_disabled_until_enabled_then_backfilled(pg_store: PostgresStore) -> None:
    """The store tier writes no rows; enabling gives waiting operations theirs."""
    from conveyor.testing.contract_support import insert, job

    await insert(pg_store, job("t.a", "t.b"))
    assert await pg_store.outbox_backlog() == {}
    await pg_store.enable_outbox()
    assert await pg_store.outbox_backlog() == {"default": 2}
    await insert(pg_store, job("t.c"))
    assert await pg_store.outbox_backlog() == {"default": 3}
