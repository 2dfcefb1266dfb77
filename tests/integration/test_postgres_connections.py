"""The store's connection pool: a healthy connection is lent without a round trip, and a
connection the server closed is replaced before any statement runs on it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from conveyor.model import JobFilter
from conveyor.store.postgres import PostgresStore
from tests.support.pg_fixtures import pg_database, pg_store, pg_url

__all__ = ["pg_database", "pg_store", "pg_url"]


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The backend of each empty statement sent (the pool's round-trip check)."""
    seen: list[int] = []
    original = psycopg.AsyncConnection.execute

    async def counted(self: psycopg.AsyncConnection[Any], query: Any, *args: Any,
                      **kwargs: Any) -> Any:
        if query == "":
            seen.append(self.info.backend_pid)
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "execute", counted)
    return seen


def _backends(url: str) -> list[int]:
    """Every other session on the store's database."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [pid for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()")]


async def test_a_healthy_connection_is_lent_without_a_round_trip(
        pg_store: PostgresStore, pings: list[int]) -> None:
    for _ in range(20):
        assert await pg_store.list_jobs(JobFilter()) == []
    await asyncio.gather(*(pg_store.list_jobs(JobFilter()) for _ in range(8)))
    assert pings == []


async def test_a_connection_the_server_closed_is_replaced_before_use(
        pg_store: PostgresStore, pings: list[int]) -> None:
    others = set(_backends(pg_store.url))
    store = PostgresStore(pg_store.url, min_size=4)  # four idle connections
    await store.open()
    try:
        give_up = time.monotonic() + 10
        while len(set(victims := _backends(store.url)) - others) < 4:
            assert time.monotonic() < give_up, "the pool did not open its connections"
            await asyncio.sleep(0.05)
        with psycopg.connect(store.url, autocommit=True) as conn:
            for pid in victims:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        while set(victims) & set(_backends(store.url)):
            assert time.monotonic() < give_up, "the terminated sessions did not end"
            await asyncio.sleep(0.05)
        # Every pooled connection is dead. The first one found out (by its check, not
        # by a statement) has every idle one checked at once, so the pool's next try
        # waits for a new connection. Found one loan at a time, the pool would retry at
        # once, then after 1 s, 2 s, 4 s: past the 3 s acquire timeout with four.
        started = time.monotonic()
        for _ in range(10):
            assert await store.list_jobs(JobFilter()) == []
        assert time.monotonic() - started < 2.0
        assert pings
        assert not set(victims) & set(_backends(store.url))
    finally:
        await store.close()
