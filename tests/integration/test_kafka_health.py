"""Readiness on the Kafka tier: the probe answers while a broker does and raises with
the reason when none does (real broker; a closed loopback port for the down case)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from conveyor.errors import TransportError
from conveyor.transport.kafka import KafkaPing
from tests.support.kafka import bootstrap


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ping_answers_while_the_broker_runs() -> None:
    asyncio.run(KafkaPing(bootstrap()).ping())


def test_ping_raises_within_its_timeout_when_no_broker_answers() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(TransportError, match=address):
        asyncio.run(KafkaPing(address, timeout_s=1.0).ping())
    assert time.monotonic() - started < 10
