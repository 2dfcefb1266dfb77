"""What every Kafka client of a process shares: the cluster's address, the user's extra
client properties (security settings for an existing cluster) and the rate-limited log.

Every producer, consumer and admin client of the Kafka tier gets its settings from
:meth:`KafkaClient.settings`, so one ``--kafka-option`` reaches all of them. Property
values are never logged (they hold passwords); :meth:`KafkaClient.shown` names the keys
only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .client_log import ClientLog


@dataclass(frozen=True, slots=True)
class KafkaClient:
    """The shared client configuration of one process."""

    bootstrap: str
    options: Mapping[str, str] = field(default_factory=dict)
    """Extra librdkafka properties (``security.protocol``, ``sasl.*``, ``ssl.*``, ...)."""
    log: ClientLog = field(default_factory=ClientLog)

    def settings(self, **own: Any) -> dict[str, Any]:
        """librdkafka settings: the user's options, then the address and log, then the
        client's own ``own`` (dotted names passed as a mapping via ``**{...}``)."""
        return {**self.options, "bootstrap.servers": self.bootstrap, "logger": self.log,
                "error_cb": self.log.error_cb, **own}

    def shown(self) -> str:
        """The address and the option names, for messages (values may be secrets)."""
        names = ",".join(sorted(self.options))
        return self.bootstrap + (f" (options {names})" if names else "")


def as_client(client: KafkaClient | str) -> KafkaClient:
    """Accept a bare ``host:port`` where a :class:`KafkaClient` is expected."""
    return client if isinstance(client, KafkaClient) else KafkaClient(client)
