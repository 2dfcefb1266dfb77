"""Apache Kafka for tests: the broker address, unique topic prefixes, and a transport
that runs its own relay (so tests that insert into the store see their work arrive).

``CONVEYOR_TEST_KAFKA_BOOTSTRAP`` (exported by ``scripts/test.sh``; start a broker with
``scripts/kafka.sh start``) is a ``host:port``. Without it the tests skip locally and
**fail** in CI (``CI`` set).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from conveyor.model import Claim
from conveyor.relay import Relay
from conveyor.store.base import OutboxStore
from conveyor.transport.kafka import KafkaPublisher, KafkaSettings, KafkaTransport, Topics

ENV = "CONVEYOR_TEST_KAFKA_BOOTSTRAP"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka.sh"


def bootstrap() -> str:
    """The broker's address, or skip (locally) / fail (CI) without one."""
    address = os.environ.get(ENV, "")
    if not address:
        message = f"{ENV} is not set (run scripts/kafka.sh start, or scripts/test.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return address


def unique_prefix(name: str = "t") -> str:
    """A topic prefix no other test uses (topics and groups are per prefix)."""
    return f"test.{name}.{uuid.uuid4().hex[:10]}."


def settings(prefix: str | None = None, partitions: int = 4, **extra: float) -> KafkaSettings:
    return KafkaSettings(bootstrap(), partitions=partitions,
                         topic_prefix=prefix or unique_prefix(), session_timeout_s=6.0,
                         **extra)  # type: ignore[arg-type]


class RelayedTransport:
    """A :class:`KafkaTransport` with a relay of the same store running alongside: what
    ``conveyor serve --transport kafka`` does in one process."""

    def __init__(self, store: OutboxStore, kafka: KafkaSettings) -> None:
        self.inner = KafkaTransport(store, kafka)
        self._publisher = KafkaPublisher(Topics(kafka.bootstrap, kafka.partitions,
                                                kafka.topic_prefix))
        self.relay = Relay(store, self._publisher, poll_s=0.02)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, queues: Sequence[str], worker_id: str) -> None:
        await self.inner.start(queues, worker_id)
        self._task = asyncio.create_task(self.relay.run(self._stopping))

    async def receive(self, max_n: int, lease_s: float, wait_s: float) -> list[Claim]:
        return await self.inner.receive(max_n, lease_s, wait_s)

    async def ack(self, claims: Sequence[Claim]) -> None:
        await self.inner.ack(claims)

    async def wake(self) -> None:
        await self.inner.wake()

    async def close(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        await self.inner.close()
        self._publisher.close()


def broker(command: str, services_dir: str | None = None) -> str:
    """Run ``scripts/kafka.sh COMMAND`` (kill, restart-after-kill, address); stdout."""
    done = subprocess.run([str(SCRIPT), command], capture_output=True, text=True,
                          timeout=180, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kafka.sh {command} failed: {done.stderr[-2000:]}")
    return done.stdout.strip()


class PrivateBroker:
    """A broker of this test's own (``scripts/kafka.sh`` with a private
    ``CONVEYOR_SERVICES_DIR``): killing it disturbs nobody else. ``start`` prints its
    address; ``kill`` keeps its port, so ``restart`` brings it back at the same address.
    ``extra_properties`` is appended to its ``server.properties`` (see scripts/kafka.sh)."""

    def __init__(self, services_dir: Path, extra_properties: Path | None = None) -> None:
        self.services_dir = services_dir
        self.extra_properties = extra_properties
        self.address = ""

    def run(self, command: str) -> str:
        env = {**os.environ, "CONVEYOR_SERVICES_DIR": str(self.services_dir)}
        if self.extra_properties is not None:
            env["CONVEYOR_KAFKA_EXTRA_PROPERTIES"] = str(self.extra_properties)
        done = subprocess.run([str(SCRIPT), command], capture_output=True, text=True,
                              timeout=180, check=False, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"kafka.sh {command} failed: {done.stderr[-2000:]}")
        return done.stdout.strip()

    def start(self) -> str:
        self.address = self.run("start")
        return self.address

    def kill(self) -> None:
        self.run("kill")

    def restart(self) -> str:
        restarted = self.run("restart-after-kill")
        assert restarted == self.address, (restarted, self.address)
        return restarted

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.run("stop")
