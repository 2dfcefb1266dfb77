"""Reconciliation on a real broker: operations ready in PostgreSQL whose messages never
reached a worker (the topic was deleted and recreated; outbox rows vanished) are found
and dispatched again, but only once the queue's consumer group has no lag."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from conveyor.model import Claim, Outcome
from conveyor.reconcile import Reconciler
from conveyor.relay import Relay
from conveyor.store.postgres import PostgresStore
from conveyor.testing.contract_support import insert, job, op
from conveyor.transport.kafka import (
    KafkaLag,
    KafkaPublisher,
    KafkaSettings,
    KafkaTransport,
    Topics,
)
from tests.support.kafka import settings
from tests.support.pg_fixtures import outbox_store, pg_database, pg_store, pg_url

__all__ = ["outbox_store", "pg_database", "pg_store", "pg_url"]


@pytest.fixture
def kafka() -> KafkaSettings:
    return settings(partitions=3)


async def _publish_all(relay: Relay, store: PostgresStore) -> int:
    total = 0
    while n := await relay.run_once():
        total += n
    assert await store.outbox_backlog() == {}
    return total


async def _receive_all(transport: KafkaTransport, store: PostgresStore, want: int,
                       timeout_s: float = 30.0) -> list[Claim]:
    got: list[Claim] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        claims = await transport.receive(100, 30.0, 0.2)
        assert await store.complete_many([Outcome.succeeded(c, None) for c in claims]) == [
            True] * len(claims)
        await transport.ack(claims)
        got.extend(claims)
    return got


def _sql(store: PostgresStore, statement: str) -> None:
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


async def test_topic_deleted_and_recreated(store: PostgresStore, kafka: KafkaSettings) -> None:
    from confluent_kafka.admin import AdminClient

    topics = Topics(kafka.bootstrap, kafka.partitions, kafka.topic_prefix)
    publisher = KafkaPublisher(topics)
    relay = Relay(store, publisher)
    lag = KafkaLag(kafka.bootstrap, kafka.topic_prefix, cache_s=0)
    reconciler = Reconciler(store, store, lag, older_than_s=0.3)
    transport = KafkaTransport(store, kafka)
    try:
        ids = await insert(store, *[job(op("t.a", key=f"k{i % 3}")) for i in range(12)])
        assert await _publish_all(relay, store) == 12
        await asyncio.sleep(0.4)
        assert await reconciler.run_once() == [], "messages are waiting in Kafka: no lag-free"

        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        topic = topics.topic("default")
        for future in admin.delete_topics([topic], operation_timeout=30).values():
            future.result(30)
        deadline = time.monotonic() + 30
        while topic in topics.partition_counts([topic]) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        topics.forget()
        await asyncio.to_thread(topics.ensure, ["default"])

        await transport.start(["default"], "w1")
        assert await _receive_all(transport, store, 1, timeout_s=3.0) == [], "the work is lost"
        redispatched = await reconciler.run_once()
        assert len(redispatched) == 12
        await _publish_all(relay, store)
        got = await _receive_all(transport, store, 12)
        assert sorted(c.job_id for c in got) == sorted(ids)
    finally:
        await transport.close()
        publisher.close()
        lag.close()


async def test_outbox_rows_lost_before_publication(store: PostgresStore,
                                                   kafka: KafkaSettings) -> None:
    topics = Topics(kafka.bootstrap, kafka.partitions, kafka.topic_prefix)
    publisher = KafkaPublisher(topics)
    relay = Relay(store, publisher)
    lag = KafkaLag(kafka.bootstrap, kafka.topic_prefix, cache_s=0)
    transport = KafkaTransport(store, kafka)
    try:
        await transport.start(["default"], "w1")
        ids = await insert(store, *[job("t.a") for _ in range(5)])
        _sql(store, "DELETE FROM outbox")  # the mark happened, the message did not
        assert await relay.run_once() == 0
        assert await Reconciler(store, store, lag, older_than_s=30).run_once() == [], (
            "too recent to be declared lost")
        await asyncio.sleep(0.5)
        assert sorted(await Reconciler(store, store, lag, older_than_s=0.3).run_once()) == (
            sorted(o.id for j in await store.get_jobs(ids) for o in j.operations))
        await _publish_all(relay, store)
        got = await _receive_all(transport, store, 5)
        assert sorted(c.job_id for c in got) == sorted(ids)
    finally:
        await transport.close()
        publisher.close()
        lag.close()
