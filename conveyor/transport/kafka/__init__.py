"""The Kafka tier's transport: PostgreSQL stays the source of truth; operations reach
workers through one Kafka topic per queue, fed by the transactional outbox.

Needs the ``kafka`` extra (``confluent-kafka``). Modules: :mod:`.messages` (message
format), :mod:`.topics` (topic creation and checks), :mod:`.producer` (the relay's
publisher), :mod:`.consumer` (group membership, buffering, commits), :mod:`.offsets`
(pure offset bookkeeping), :mod:`.transport` (the transport port), :mod:`.lag`,
:mod:`.health` (readiness), :mod:`.client` (settings every client shares) and
:mod:`.client_log` (librdkafka's logs, rate-limited).
"""

from __future__ import annotations

from .client import KafkaClient
from .client_log import ClientLog
from .health import KafkaPing
from .lag import KafkaLag, PartitionLag
from .producer import KafkaPublisher
from .topics import TopicMismatch, Topics
from .transport import KafkaSettings, KafkaTransport

__all__ = ["ClientLog", "KafkaClient", "KafkaLag", "KafkaPing", "KafkaPublisher",
           "KafkaSettings", "KafkaTransport", "PartitionLag", "TopicMismatch", "Topics"]
