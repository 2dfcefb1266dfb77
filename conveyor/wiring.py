"""Configuration to adapters: the only module that knows every adapter.

Optional adapters are imported lazily, so the embedded tier needs none of their
dependencies; a missing one gets an install hint instead of an ImportError.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .backpressure import DepthSource
from .config import Config, kafka_client_options
from .errors import ConfigError, TransportError
from .model import NewJob
from .ratelimit.base import Limiter
from .relay import Relay
from .service import Service, TaskCatalog
from .store.base import Store
from .tasks import Registry
from .transport.base import Transport


def make_store(config: Config) -> Store:
    """The store adapter for ``config.store`` (not yet opened)."""
    url = config.store
    if url.startswith("sqlite://"):
        from .store.sqlite import SQLiteStore

        rest = url.removeprefix("sqlite://")
        path = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel, sqlite:////abs
        return SQLiteStore(Path(path or "conveyor.db"), synchronous=config.sqlite_synchronous)
    if url.startswith("memory:"):
        from .store.memory import MemoryStore

        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from .store.postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL store needs its extra: pip install 'conveyor[postgres]' ({exc})"
            ) from exc
        return PostgresStore(  # type: ignore[no-any-return,unused-ignore]
            url, pipeline=config.postgres_pipeline, max_groups=config.postgres_commit_groups)
    raise ConfigError(
        f"unknown store URL {url!r}: use sqlite:///path, memory:// or postgresql://..."
    )


def make_transport(config: Config, store: Store, *, kafka_client: Any = None,
                   stopping: Any = None) -> Transport:
    """The transport of a worker. On Kafka it waits for a broker at start-up until
    ``stopping`` (an ``asyncio.Event``) is set."""
    if config.transport == "store":
        from .transport.store import StoreTransport

        return StoreTransport(store, poll_s=config.poll_s)
    if config.transport == "kafka":
        from .store.base import OutboxStore

        kafka = _kafka()
        if not isinstance(store, OutboxStore):
            raise ConfigError("--transport kafka needs a PostgreSQL store (--store "
                              "postgresql://...)")
        return kafka.KafkaTransport(  # type: ignore[no-any-return]
            store, kafka_settings(config, kafka_client), stopping=stopping)
    raise ConfigError(f"transport {config.transport!r} is not available in this version")


def _kafka() -> Any:
    try:
        from .transport import kafka
    except ImportError as exc:
        raise ConfigError(
            f"the Kafka transport needs its extra: pip install 'conveyor[kafka]' ({exc})"
        ) from exc
    return kafka


def make_kafka_client(config: Config, metrics: Any = None) -> Any:
    """What every Kafka client of this process shares (address, the user's client
    properties, the rate-limited client log counting into ``metrics``), or ``None`` off
    the Kafka tier."""
    if config.transport != "kafka":
        return None
    kafka = _kafka()

    def on_event(kind: str) -> None:
        if metrics is not None:
            metrics.kafka_client_events.labels(kind).inc()

    return kafka.KafkaClient(config.kafka_bootstrap or "", kafka_client_options(config),
                             kafka.ClientLog(on_event=on_event))


def kafka_settings(config: Config, kafka_client: Any = None) -> Any:
    """The Kafka transport's settings from ``config``."""
    kafka = _kafka()
    return kafka.KafkaSettings(
        client=kafka_client or make_kafka_client(config),
        bootstrap=config.kafka_bootstrap or "", partitions=config.kafka_partitions,
        topic_prefix=config.kafka_topic_prefix,
        session_timeout_s=config.kafka_session_timeout_s, park_s=config.kafka_park_s,
        max_buffer=config.kafka_max_buffered,
        drain_s=min(config.shutdown_grace_s, config.lease_s))


def make_relay(config: Config, store: Store, metrics: Any = None,
               kafka_client: Any = None) -> Relay:
    """The outbox relay of the Kafka tier, with reconciliation and the lag gauges of
    ``metrics``, on an opened store."""
    from .reconcile import Reconciler
    from .store.base import OutboxStore

    kafka = _kafka()
    if not isinstance(store, OutboxStore):
        raise ConfigError("the relay needs a PostgreSQL store (--store postgresql://...)")
    settings = kafka_settings(config, kafka_client)
    topics = kafka.Topics(settings.kafka_client, settings.partitions, settings.topic_prefix)
    lag = kafka.KafkaLag(settings.kafka_client, settings.topic_prefix)
    reconciler = Reconciler(store, store, lag, older_than_s=config.reconcile_after_s,
                            metrics=metrics)
    publisher = kafka.KafkaPublisher(topics, spread_run=config.relay_spread_run)
    return Relay(store, publisher, batch=config.relay_batch,
                 poll_s=config.relay_poll_s, lease_s=config.relay_lease_s,
                 maintenance=reconciler, closers=[lag.close])


def make_transport_stats(
    config: Config, store: Store, kafka_client: Any = None
) -> Callable[[Sequence[str]], Awaitable[dict[str, Any]]] | None:
    """What ``/v1/stats`` and ``/metrics`` report about the transport (Kafka: lag per
    partition and the outbox backlog), or ``None``."""
    from .store.base import OutboxStore

    if config.transport != "kafka" or not isinstance(store, OutboxStore):
        return None
    from .reconcile import TransportStats

    kafka = _kafka()
    settings = kafka_settings(config, kafka_client)
    stats = TransportStats(store, store, kafka.KafkaLag(settings.kafka_client,
                                                        settings.topic_prefix))
    return stats.read


def make_readiness(config: Config, store: Store, *, kafka_client: Any = None,
                   transport: Transport | None = None) -> Callable[[], Awaitable[None]]:
    """What ``/health/ready`` awaits: the store answers with a current schema, and on the
    Kafka tier a broker answers too and ``transport`` (a worker's) has joined its
    consumer groups. Raises with the failing dependency's reason."""
    if config.transport != "kafka":
        return store.ping
    kafka = _kafka()
    ping = kafka.KafkaPing(kafka_client or make_kafka_client(config))

    async def ready() -> None:
        await store.ping()
        if isinstance(transport, kafka.KafkaTransport) and transport.not_ready is not None:
            raise TransportError(transport.not_ready)
        await ping.ping()

    return ready


def transport_depth(service: Service) -> DepthSource | None:
    """Backpressure's view of the transport's backlog (Kafka: consumer lag plus the
    outbox rows not yet published, per queue), or ``None`` on the store transport, whose
    backlog is the store's ready depth already counted. Its queues are those the store's
    source found earlier in the same refresh (see :mod:`conveyor.backpressure`): the
    store's statistics are not read a second time; with none found it adds nothing."""
    if service.transport_stats_source is None:
        return None

    async def depth(found: Mapping[str, int]) -> Mapping[str, int]:
        queues = sorted(found)
        if not queues:
            return {}
        stats = await service.transport_stats(queues) or {}
        backlog = stats.get("outbox_backlog") or {}
        lags = stats.get("queues") or {}
        return {q: int(lags.get(q, {}).get("lag", 0)) + int(backlog.get(q, 0))
                for q in queues}

    return depth


def make_service(
    config: Config,
    store: Store,
    local: Registry | None = None,
    on_submit: Callable[[Sequence[NewJob]], Awaitable[None]] | None = None,
    kafka_client: Any = None,
) -> Service:
    return Service(store, TaskCatalog(store, local), config.limits, on_submit=on_submit,
                   transport_stats=make_transport_stats(config, store, kafka_client))


def make_limiter(
    config: Config, on_degraded: Callable[[bool], None] | None = None
) -> Limiter | None:
    """The rate limiter for ``config``: None when limiting is off, Redis when
    ``redis_url`` is set (shared by API processes), else this process's memory."""
    if config.rate_limit_per_s <= 0:
        return None
    if config.redis_url:
        from .ratelimit.redis import RedisLimiter

        try:
            return RedisLimiter(config.redis_url, config.rate_limit_per_s,
                                config.rate_limit_burst, on_degraded=on_degraded,
                                failure_mode=config.rate_limit_failure_mode)
        except ImportError as exc:
            raise ConfigError(str(exc)) from exc
    from .ratelimit.memory import MemoryLimiter

    return MemoryLimiter(config.rate_limit_per_s, config.rate_limit_burst)
