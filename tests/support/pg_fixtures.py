"""pytest fixtures for PostgreSQL tests: one database per test module, one schema per test.

Import the fixtures into a test module (``from tests.support.pg_fixtures import ...``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from conveyor.store.postgres import PostgresStore

from .postgres import create_database, create_schema, drop_database, drop_schema


@pytest.fixture(scope="module")
def pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh database for this test module (dropped afterwards)."""
    url = create_database("conveyor_" + request.module.__name__.rsplit(".", 1)[-1])
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """URL of a fresh, empty schema (not migrated) for this test."""
    schema, url = create_schema(pg_database)
    try:
        yield url
    finally:
        drop_schema(pg_database, schema)


async def _opened(url: str, *, pipeline: bool) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url, pipeline=pipeline)
    await store.migrate()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PostgresStore]:
    """A migrated, opened, empty PostgreSQL store, closed after the test."""
    async for store in _opened(pg_url, pipeline=False):
        yield store


@pytest.fixture
async def pipelined_pg_store(pg_url: str) -> AsyncIterator[PostgresStore]:
    """``pg_store`` with pipelined transactions (``Config.postgres_pipeline``)."""
    async for store in _opened(pg_url, pipeline=True):
        yield store


@pytest.fixture(name="store")
async def outbox_store(pg_store: PostgresStore) -> AsyncIterator[PostgresStore]:
    """``store``: the migrated store with the Kafka tier's outbox enabled (import
    ``outbox_store`` into a module to use it)."""
    await pg_store.enable_outbox()
    yield pg_store
