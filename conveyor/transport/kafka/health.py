"""Is the Kafka cluster reachable? The readiness half of the Kafka tier's probes."""

from __future__ import annotations

import asyncio
from typing import Any

from ...errors import TransportError
from .client import KafkaClient, as_client


class KafkaPing:
    """Asks the cluster for its metadata; :meth:`ping` raises :class:`TransportError`
    when no broker answers within ``timeout_s``, with the client's latest error (e.g.
    connection refused, authentication failed) when there is one. One admin client,
    reused."""

    def __init__(self, client: KafkaClient | str, timeout_s: float = 2.0) -> None:
        self.client = as_client(client)
        self.bootstrap = self.client.bootstrap
        self._timeout_s = timeout_s
        self._admin: Any = None

    async def ping(self) -> None:
        await asyncio.to_thread(self._ping)

    def _ping(self) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient(self.client.settings())
        try:
            meta = self._admin.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            self._admin.poll(0)  # its queued log lines and errors first
            recent = self.client.log.last_error()
            raise TransportError(f"Kafka at {self.bootstrap} does not answer: {exc}" + (
                f" (client: {recent})" if recent else "")) from exc
        finally:
            self._admin.poll(0)  # hand queued client log lines to ``logging``
        if not meta.brokers:
            raise TransportError(f"Kafka at {self.bootstrap} has no brokers")
