"""The transport port: how ready operations reach workers.

``receive`` hands out leased :class:`~conveyor.model.Claim` objects: the store holds the
lease in every transport, so fencing and rescue work the same everywhere. ``ack`` tells the
transport that the outcomes of those claims are durable in the store. For the store-backed
transport that is a no-op; for a log-based transport it means "the offset of this message
may be committed once every earlier message on its partition is acked too".

Every adapter passes :mod:`conveyor.testing.transport_contract`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..model import Claim
from ..store.base import OutboxEntry


class Transport(Protocol):
    async def start(self, queues: Sequence[str], worker_id: str) -> None:
        """Begin delivering operations of ``queues`` to this worker."""

    async def receive(self, max_n: int, lease_s: float, wait_s: float) -> list[Claim]:
        """Up to ``max_n`` leased claims; waits at most ``wait_s`` when none is ready."""

    async def ack(self, claims: Sequence[Claim]) -> None:
        """The outcomes of these claims are durable (or their leases were released)."""

    async def wake(self) -> None:
        """New work may be ready (a local submission, a finished key): stop waiting."""

    async def close(self) -> None: ...


class Publisher(Protocol):
    """Where the relay sends outbox entries (a log transport's producer side)."""

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        """Return once every entry is durable in the log, else raise
        :class:`conveyor.errors.TransportError` (some may have been published: the
        relay publishes them again, consumers skip the duplicates)."""

    def close(self) -> None: ...
