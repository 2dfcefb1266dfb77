"""The relay on PostgreSQL and a real broker wakes on ``NOTIFY conveyor_outbox``, not on
its poll: with the fallback poll set to seconds, a submission is published within
milliseconds, a delayed row at its due time (never before), and after its listening
connection is killed the relay still publishes (within the fallback poll) and listens
again. The relay inside the API (``conveyor api --relay``) is woken by the API's own
submissions, without the notification."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import httpx
import psycopg
import pytest

from conveyor.config import load_config
from conveyor.model import Outcome
from conveyor.relay import Relay
from conveyor.server import run
from conveyor.store.base import OutboxEntry
from conveyor.store.postgres import PostgresStore
from conveyor.testing.contract_support import insert, job, op, operations
from conveyor.transport.kafka import KafkaPublisher, KafkaSettings, KafkaTransport, Topics
from tests.support.kafka import settings
from tests.support.pg_fixtures import outbox_store, pg_database, pg_store, pg_url
from tests.support.processes import free_port

__all__ = ["outbox_store", "pg_database", "pg_store", "pg_url"]

TOLERANCE_S = 0.05
"""Clock slack between this process and the database's ``now()`` (same machine)."""


class TimedPublisher:
    """The real Kafka publisher, noting when each operation was durable in Kafka."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.inner = KafkaPublisher(Topics(kafka.bootstrap, kafka.partitions,
                                           kafka.topic_prefix))
        self.published_at: dict[str, float] = {}

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        await self.inner.publish(entries)
        now = time.monotonic()
        for entry in entries:
            self.published_at.setdefault(entry.op_id, now)

    def close(self) -> None:
        self.inner.close()


class RunningRelay:
    def __init__(self, store: PostgresStore, kafka: KafkaSettings, poll_s: float) -> None:
        self.publisher = TimedPublisher(kafka)
        self.relay = Relay(store, self.publisher, poll_s=poll_s)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RunningRelay:
        self._task = asyncio.create_task(self.relay.run(self._stopping))
        return self

    async def published(self, op_id: str, within_s: float) -> float:
        """When ``op_id`` was published (monotonic); fails after ``within_s``."""
        deadline = time.monotonic() + within_s
        while op_id not in self.publisher.published_at:
            assert time.monotonic() < deadline, f"{op_id} not published within {within_s} s"
            assert self._task is not None and not self._task.done(), "the relay stopped"
            await asyncio.sleep(0.005)
        return self.publisher.published_at[op_id]

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)
        self.relay.close()


@pytest.fixture
def kafka() -> KafkaSettings:
    return settings(partitions=2)


async def _submit(store: PostgresStore, delay_s: float = 0.0) -> tuple[str, float]:
    """Submit one operation; its id and the monotonic time just before the submission."""
    before = time.monotonic()
    [job_id] = await insert(store, job(op("t.a", delay_s=delay_s)))
    [operation] = await operations(store, job_id)
    return operation.id, before


def _listeners(url: str) -> list[int]:
    """Backends of this database listening (the store's one listening connection)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()").fetchall()]


async def _one_listener(url: str, other_than: int | None = None) -> int:
    deadline = time.monotonic() + 10
    while True:
        found = await asyncio.to_thread(_listeners, url)
        if len(found) == 1 and found[0] != other_than:
            return found[0]
        assert len(found) <= 1, f"one listening connection per process, not {found}"
        assert time.monotonic() < deadline, f"no (new) listening connection: {found}"
        await asyncio.sleep(0.05)


async def test_a_submission_is_published_at_once_not_at_the_poll(
        store: PostgresStore, kafka: KafkaSettings) -> None:
    running = RunningRelay(store, kafka, poll_s=5.0).start()
    transport = KafkaTransport(store, kafka)
    try:
        first, _ = await _submit(store)
        await running.published(first, within_s=30)  # topic created, listener up
        await _one_listener(store.url)
        latencies_s = []
        for _ in range(5):
            await asyncio.sleep(0.3)  # the relay is idle in a 5 s wait
            op_id, before = await _submit(store)
            latencies_s.append(await running.published(op_id, within_s=10) - before)
        print(f"\nsubmit -> published in Kafka: {[round(x * 1000, 1) for x in latencies_s]} ms")
        assert max(latencies_s) < 0.5, latencies_s
        # And they really are in Kafka: a worker receives all six.
        await transport.start(["default"], "w1")
        got: list[str] = []
        deadline = time.monotonic() + 30
        while len(got) < 6 and time.monotonic() < deadline:
            claims = await transport.receive(10, 30.0, 0.5)
            await store.complete_many([Outcome.succeeded(c, None) for c in claims])
            await transport.ack(claims)
            got.extend(c.op_id for c in claims)
        assert sorted(got) == sorted(running.publisher.published_at)
    finally:
        await transport.close()
        await running.stop()


async def test_a_delayed_row_is_published_at_its_due_time_not_before(
        store: PostgresStore, kafka: KafkaSettings) -> None:
    """One row written before the relay started (no notification to wait for) and one
    while it runs: each is published when due, though the fallback poll is 5 s."""
    early, early_before = await _submit(store, delay_s=1.5)
    running = RunningRelay(store, kafka, poll_s=5.0).start()
    try:
        warm, _ = await _submit(store)
        await running.published(warm, within_s=30)
        late, late_before = await _submit(store, delay_s=2.0)
        early_at = await running.published(early, within_s=10)
        late_at = await running.published(late, within_s=10)
        early_s, late_s = early_at - early_before, late_at - late_before
        print(f"\ndelayed 1.5 s published after {early_s:.3f} s; 2 s after {late_s:.3f} s")
        assert 1.5 - TOLERANCE_S <= early_s < 1.5 + 0.5, early_s
        assert 2.0 - TOLERANCE_S <= late_s < 2.0 + 0.5, late_s
    finally:
        await running.stop()


async def test_a_killed_listening_connection_costs_at_most_the_fallback_poll(
        store: PostgresStore, kafka: KafkaSettings) -> None:
    poll_s = 3.0
    running = RunningRelay(store, kafka, poll_s=poll_s).start()
    try:
        warm, _ = await _submit(store)
        await running.published(warm, within_s=30)
        listener = await _one_listener(store.url)
        await asyncio.sleep(0.3)
        with psycopg.connect(store.url, autocommit=True) as conn:
            [killed] = conn.execute("SELECT pg_terminate_backend(%s)", (listener,)).fetchone()
            assert killed
        op_id, before = await _submit(store)  # its notification has no listener
        assert await running.published(op_id, within_s=poll_s + 1.0) - before < poll_s + 1.0
        # The relay listens again, on a new connection, and is woken by it once more.
        relistened = await _one_listener(store.url, other_than=listener)
        assert relistened != listener
        latencies_s = []
        for _ in range(3):
            await asyncio.sleep(0.3)
            op_id, before = await _submit(store)
            latencies_s.append(await running.published(op_id, within_s=10) - before)
        assert max(latencies_s) < 0.5, latencies_s
    finally:
        with contextlib.suppress(Exception):
            await running.stop()


async def _outbox_rows(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT count(*) FROM outbox")).fetchone()
        assert row is not None
        return int(row[0])


async def test_the_api_relay_publishes_its_own_submissions_without_the_notification(
        store: PostgresStore, kafka: KafkaSettings) -> None:
    """``conveyor api --relay`` with the outbox's NOTIFY trigger disabled and a fallback
    poll of 30 s: each submission over HTTP is published (its outbox row deleted) within
    a second, because the API wakes its relay once the insert is durable; and the
    messages are in Kafka."""
    poll_s = 30.0
    pg_url = store.url
    port = free_port()
    config = load_config({
        "store": pg_url, "port": port, "transport": "kafka",
        "kafka_bootstrap": kafka.bootstrap, "kafka_partitions": kafka.partitions,
        "kafka_topic_prefix": kafka.topic_prefix, "relay_in_process": True,
        "relay_poll_s": poll_s}, environ={})
    server = asyncio.create_task(run(config, api=True, worker=False, handle_signals=False))
    transport = KafkaTransport(store, kafka)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                assert not server.done(), server
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/health/ready")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "the API never became ready"
                await asyncio.sleep(0.1)
            async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
                await conn.execute("ALTER TABLE outbox DISABLE TRIGGER outbox_notify")
            await asyncio.sleep(0.5)  # the relay's start-up claim is over: it waits
            ids, latencies_s = [], []
            for _ in range(4):  # the first creates the topic: it may take seconds
                before = time.monotonic()
                answer = await http.post("/v1/jobs", json={"task": "sys.noop"})
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["operations"][0]["id"])
                while await _outbox_rows(pg_url):
                    assert time.monotonic() - before < 10, "not published: waiting for the poll"
                    await asyncio.sleep(0.01)
                latencies_s.append(time.monotonic() - before)
                await asyncio.sleep(0.3)
        print(f"\nsubmit -> published (no NOTIFY): {[round(x * 1000, 1) for x in latencies_s]} ms")
        assert max(latencies_s[1:]) < 1.0, latencies_s
        await transport.start(["default"], "w1")
        got: list[str] = []
        deadline = time.monotonic() + 30
        while len(got) < len(ids) and time.monotonic() < deadline:
            claims = await transport.receive(10, 30.0, 0.5)
            await store.complete_many([Outcome.succeeded(c, None) for c in claims])
            await transport.ack(claims)
            got.extend(c.op_id for c in claims)
        assert sorted(got) == sorted(ids)
    finally:
        await transport.close()
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
