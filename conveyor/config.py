"""Configuration: one typed object, read from flags and ``CONVEYOR_*`` variables in one place.

Precedence: explicit overrides (CLI flags) > environment > defaults. Nothing else in the
package reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits applied to every submission (HTTP and Python)."""

    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted on ``POST /v1/jobs`` (413 beyond)."""
    max_batch_body_bytes: int = 16 * 1024 * 1024
    """Largest request body accepted on ``POST /v1/jobs/batch``."""
    max_operations_per_job: int = 1000
    max_jobs_per_batch: int = 5000
    max_args_bytes: int = 256 * 1024
    max_json_depth: int = 32
    max_string_length: int = 64 * 1024
    max_key_length: int = 256
    max_metadata_bytes: int = 16 * 1024
    max_delay_s: float = 365 * 24 * 3600.0
    max_timeout_s: float = 24 * 3600.0
    max_attempts_limit: int = 100


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a Conveyor process can be told. Field comments give the defaults' why."""

    store: str = "sqlite:///conveyor.db"
    """Store URL: ``sqlite:///path`` (relative to the working directory), ``memory://``,
    or ``postgresql://...``."""
    transport: str = "store"
    """``store`` (workers claim from the store) or ``kafka``."""
    kafka_bootstrap: str | None = None
    """Kafka ``bootstrap.servers`` (``host:port[,host:port]``) for ``--transport kafka``."""
    kafka_partitions: int = 12
    """Partitions of each queue's topic when it is created; an existing topic with fewer
    is refused (adding partitions later would break per-key order)."""
    kafka_topic_prefix: str = "conveyor."
    """Topic of queue Q is ``<prefix>Q`` (dead letters: ``<prefix>Q.dlq``); its consumer
    group has the same name."""
    kafka_session_timeout_s: float = 10.0
    """A killed worker's partitions move to the others after at most this long."""
    kafka_max_buffered: int = 5000
    """Messages a worker holds per queue before it stops taking more from its Kafka client,
    which prefetches at most this many per partition; at twice this (a worker stuck for
    minutes) it pauses fetching until the count is below it again."""
    kafka_park_s: float = 0.5
    """An operation held back by an earlier open operation of its key re-enters Kafka
    after this long (so a backoff never blocks its partition)."""
    kafka_options: tuple[str, ...] = field(default=(), repr=False)
    """Extra librdkafka client properties, ``key=value`` each (``--kafka-option``,
    repeatable; comma-separated in ``CONVEYOR_KAFKA_OPTIONS``), for every producer,
    consumer and admin client: e.g. ``security.protocol=SASL_SSL``. Values are never
    logged. They override ``kafka_options_file``."""
    kafka_options_file: str = ""
    """A file of librdkafka client properties, one ``key=value`` a line (``#`` comments),
    like a Kafka ``client.properties``: the place for secrets and values with commas."""
    relay_in_process: bool = True
    """Run the outbox relay inside ``conveyor api`` / ``conveyor serve`` (Kafka tier), so
    the tier needs no process of its own for it. On by default: woken by the API's own
    submissions, it publishes them sooner and at less CPU than a ``conveyor relay`` apart
    (docs/kafka.md). Off (``--no-relay``) for APIs beyond the first few, which then leave
    the outbox to a relay or two of their own."""
    relay_batch: int = 500
    """Outbox rows published per batch."""
    relay_spread_run: int = 32
    """Fewest operations without a key that the relay sends to one partition from one
    batch (unless the batch is smaller): a small batch goes to one partition, a batch of
    this many times the partitions or more to every one. Larger runs cost the broker and
    the consumers less per message (the measurements are at
    ``conveyor.transport.kafka.producer.SPREAD_RUN``); smaller ones share a small batch
    among more of a queue's workers."""
    relay_poll_s: float = 1.0
    """Fallback poll of an idle relay. It wakes on new outbox rows (PostgreSQL
    ``LISTEN/NOTIFY``) and when the earliest delayed row falls due; this bounds the delay
    only when a notification was missed (the listening connection dropped)."""
    relay_lease_s: float = 10.0
    """A batch claimed by a relay that died is published again after this long."""
    reconcile_after_s: float = 60.0
    """An operation ready this long with no outbox row, in a queue whose consumer group
    has no lag, is re-dispatched (its message was lost). 0 turns reconciliation off."""
    host: str = "127.0.0.1"
    port: int = 8000
    event_loop: str = "auto"
    """Event loop of ``serve``, ``api``, ``worker`` and ``relay``: ``auto`` takes uvloop
    when it is installed (it comes with ``uvicorn[standard]``; it halves the loop's own
    cost per request), ``uvloop`` requires it, ``asyncio`` is the standard loop."""
    tasks: tuple[str, ...] = ()
    """Modules whose ``@task`` functions to load (besides the built-in ones)."""
    queues: tuple[str, ...] = ()
    """Queues a worker serves; empty means every queue its tasks name, plus ``default``."""
    concurrency: int = 256
    """Operations in flight per worker process (async tasks and pool jobs together). It
    also bounds the worker's batches: a claim, and a write of outcomes, holds at most this
    many, so the default matches ``claim_batch`` (256 against 100: +8-41 % in 4 pairs of
    drains of no-op operations on the PostgreSQL and Kafka tiers).
    ``def`` tasks claimed beyond the pool's ``processes`` wait in the worker holding their
    leases: with long ``def`` tasks and many workers, a lower value shares them out
    more evenly."""
    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Size of the process pool for ``def`` tasks."""
    lease_s: float = 10.0
    """A claim's lease; renewed every ``lease_s / 3``. A killed worker's operations run
    again after at most ``lease_s + rescue_interval_s`` (11 s by default)."""
    rescue_interval_s: float = 1.0
    worker_timeout_s: float = 15.0
    """A worker not heard from for this long is marked gone and its leases are freed."""
    gone_worker_retention_s: float = 86_400.0
    """A gone worker stays listed (``conveyor workers --all``) this long after it was
    last heard from; then its row is deleted, so restarts do not grow the registry."""
    claim_batch: int = 256
    claim_ahead: int = 0
    """Operations a worker keeps claimed ahead of its free slots, waiting to start: its
    next claim is written while the attempts it has run, and a slot that frees takes a
    waiting operation at once (more throughput for short tasks). Each holds a lease,
    renewed like the running ones, and its claim counts as an attempt; on stop they are
    released unstarted. A worker killed while holding them costs each an attempt: they
    run again once their leases expire, and one on its last attempt ends ``dead``
    (``LeaseExpired``) without having run, as a running one does. Off (0) by default."""
    outcome_linger_s: float = 0.1
    """While the process pool is saturated (calls wait for a child), finished outcomes wait
    up to this long to share one write with others (32 at most), so the worker's own
    store work takes less CPU away from the pool; recording is delayed by at most this.
    0 writes each outcome as soon as the previous write is done."""
    poll_s: float = 0.2
    shutdown_grace_s: float = 30.0
    retry_base_s: float = 1.0
    retry_cap_s: float = 300.0
    sqlite_synchronous: str = "FULL"
    """``FULL`` (fsync each commit: an acknowledged job survives power loss) or ``NORMAL``
    (survives a killed process, not a power loss)."""
    postgres_pipeline: bool = False
    """Send each PostgreSQL transaction's statements without waiting for the results it
    does not read (psycopg's pipeline mode): fewer round trips, more client CPU. Off by
    default: with the database on the same machine, the CPU cost outweighs the round
    trips saved (one statement in a transaction: 448 µs of client CPU pipelined, 226 µs
    plain). Worth measuring when the database is a slow network hop away."""
    postgres_commit_groups: int = 1
    """Group commits of submissions in flight at once, each on a connection of its own.
    One (the default) makes the largest groups, so the least CPU per submission in the API
    and the database: on 2 cores with the database on them, B3's start p50 at half of B2
    was lower than with two in all 4 pairs on the PostgreSQL tier and 7 of 8 on the Kafka
    tier, B2 no slower (docs/performance-history.md). Two overlap one group's commit with
    the next: worth measuring when a commit's round trip is long (a distant database)."""
    log_level: str = "INFO"
    log_format: str = "auto"
    """``json`` (one object per line), ``text``, or ``auto``: text on a terminal."""
    otel_traces_exporter: str = ""
    """Read from the standard ``OTEL_TRACES_EXPORTER``: ``otlp`` or ``console`` turn
    tracing on (extra ``conveyor[otel]``); the other ``OTEL_*`` variables configure it."""
    metrics_port: int = 0
    """When set, a worker or relay process serves ``/metrics`` and health probes here."""
    limits: Limits = field(default_factory=Limits)
    # protecting the API (see docs/security.md) ----------------------------------------
    auth: str = "auto"
    """``auto``: API keys are required unless the API listens on loopback only (then
    requests without a key act as tenant ``default`` with every scope, for local
    development, and start-up says so); ``required``: always. A key that is sent is
    always checked, in both modes."""
    rate_limit_per_s: float = 100.0
    """Requests per second per tenant (token bucket refill rate); 0 turns limiting off."""
    rate_limit_burst: int = 200
    """Bucket size: how many requests a tenant may make at once after being idle."""
    rate_limit_anonymous: bool = False
    """Also limit requests without a key (open loopback mode), per client address."""
    redis_url: str = ""
    """``redis://host:port/db``: share rate limits between API processes (extra
    ``conveyor[redis]``); empty: each API process limits on its own, in memory."""
    rate_limit_failure_mode: str = "open"
    """What the Redis limiter does while Redis is unreachable: ``open`` (let requests
    through), ``local`` (limit in this process's memory) or ``closed`` (answer 503)."""
    backpressure_warn_depth: int = 100_000
    """Ready operations in a queue above which low-priority submissions get 429; 0: off."""
    backpressure_critical_depth: int = 1_000_000
    """Ready operations in a queue above which every submission gets 503; 0: off."""
    backpressure_queues: tuple[str, ...] = ()
    """Per-queue thresholds, ``queue=warn:critical`` each (comma-separated in the env)."""
    backpressure_low_priority: int = 0
    """A job whose operations all have a priority below this is low-priority."""
    backpressure_refresh_s: float = 1.0
    """How often queue depths are re-read (at most) for admission decisions."""

    @property
    def auth_required(self) -> bool:
        """Whether requests need an API key (always, unless the API is loopback-only)."""
        return self.auth == "required" or not is_loopback(self.host)

    @property
    def store_shown(self) -> str:
        """The store URL without its password, for messages and logs."""
        return redact_url(self.store)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def validate(self) -> Config:
        if self.transport not in ("store", "kafka"):
            raise ConfigError(f"transport must be 'store' or 'kafka', not {self.transport!r}")
        if self.transport == "kafka" and not self.kafka_bootstrap:
            raise ConfigError("--transport kafka needs --kafka-bootstrap host:port")
        if self.transport == "kafka" and not self.store.startswith(
                ("postgresql://", "postgres://")):
            raise ConfigError("--transport kafka needs a PostgreSQL store "
                              "(--store postgresql://...): the outbox lives there")
        if min(self.kafka_partitions, self.relay_batch, self.kafka_max_buffered,
               self.relay_spread_run) < 1:
            raise ConfigError("kafka_partitions, kafka_max_buffered, relay_batch and "
                              "relay_spread_run must be at least 1")
        if self.kafka_park_s <= 0 or self.relay_poll_s <= 0 or self.relay_lease_s <= 0:
            raise ConfigError("kafka_park_s, relay_poll_s and relay_lease_s must be positive")
        kafka_client_options(self)  # raises on a malformed entry or an unreadable file
        if self.postgres_commit_groups < 1:
            raise ConfigError("postgres_commit_groups must be at least 1")
        if self.concurrency < 1 or self.processes < 1 or self.claim_batch < 1:
            raise ConfigError("concurrency, processes and claim_batch must be at least 1")
        if self.claim_ahead < 0:
            raise ConfigError("claim_ahead must be 0 or more")
        if self.gone_worker_retention_s <= 0:
            raise ConfigError("gone_worker_retention_s must be positive")
        if self.lease_s <= 0 or self.poll_s <= 0:
            raise ConfigError("lease_s and poll_s must be positive")
        if self.event_loop not in ("auto", "uvloop", "asyncio"):
            raise ConfigError(f"event_loop must be auto, uvloop or asyncio, not "
                              f"{self.event_loop!r}")
        if not 0 <= self.outcome_linger_s < self.lease_s / 3:
            raise ConfigError("outcome_linger_s must be in [0, lease_s / 3)")
        if self.sqlite_synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError("sqlite_synchronous must be FULL, NORMAL or EXTRA")
        if self.log_format not in ("auto", "json", "text"):
            raise ConfigError("log_format must be auto, json or text")
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"metrics_port must be in 0..65535, not {self.metrics_port}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be in 1..65535, not {self.port}")
        self._validate_protection()
        return self

    def _validate_protection(self) -> None:
        if self.auth not in ("auto", "required"):
            raise ConfigError(f"auth must be 'auto' or 'required', not {self.auth!r}")
        if self.rate_limit_per_s < 0 or (self.rate_limit_per_s > 0 and self.rate_limit_burst < 1):
            raise ConfigError("rate_limit_per_s must be >= 0 and rate_limit_burst >= 1")
        if self.rate_limit_failure_mode not in ("open", "local", "closed"):
            raise ConfigError("rate_limit_failure_mode must be open, local or closed, not "
                              f"{self.rate_limit_failure_mode!r}")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"redis_url must be redis://host:port/db, not {self.redis_url!r}")
        if self.backpressure_refresh_s <= 0:
            raise ConfigError("backpressure_refresh_s must be positive")
        backpressure_thresholds(self)  # raises on a malformed entry



def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://..."
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _coerce(name: str, raw: str, target: Any) -> Any:
    try:
        if isinstance(target, bool):
            word = raw.strip().lower()
            if word not in _TRUE + _FALSE:
                raise ValueError("not a yes/no value: use 1, true, yes, on or 0, false, no, off")
            return word in _TRUE
        if isinstance(target, int):
            return int(raw)
        if isinstance(target, float):
            return float(raw)
        if isinstance(target, tuple):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
    except ValueError as exc:
        raise ConfigError(f"CONVEYOR_{name.upper()}={raw!r}: {exc}") from exc
    return raw


def load_config(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Build and validate the configuration: overrides > ``CONVEYOR_*`` > defaults.

    Overrides whose value is None are ignored, so CLI flags can be passed through as-is.
    """
    env = os.environ if environ is None else environ
    base = Config()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Config):
        if f.name == "limits":
            continue
        raw = env.get(f"CONVEYOR_{f.name.upper()}")
        if raw is not None:
            values[f.name] = _coerce(f.name, raw, getattr(base, f.name))
    if env.get("OTEL_TRACES_EXPORTER"):
        values["otel_traces_exporter"] = env["OTEL_TRACES_EXPORTER"].strip().lower()
    limit_values: dict[str, Any] = {}
    for f in dataclasses.fields(Limits):
        raw = env.get(f"CONVEYOR_{f.name.upper()}")
        if raw is not None:
            limit_values[f.name] = _coerce(f.name, raw, getattr(base.limits, f.name))
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name in {f.name for f in dataclasses.fields(Limits)}:
            limit_values[name] = value
        else:
            values[name] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(base, limits=Limits(**limit_values), **values).validate()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost`` (not ``0.0.0.0`` or ``::``)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


KAFKA_RESERVED_OPTIONS = frozenset({
    "bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store",
    "enable.idempotence", "acks", "partitioner", "logger", "error_cb"})
"""Client properties Conveyor sets itself: its guarantees depend on them."""


def kafka_client_options(config: Config) -> dict[str, str]:
    """The extra Kafka client properties: ``kafka_options_file``, then ``kafka_options``.
    Raises :class:`ConfigError` naming the bad entry's key, never its value."""
    entries: list[tuple[str, str]] = []
    if config.kafka_options_file:
        try:
            with open(config.kafka_options_file, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise ConfigError(f"kafka_options_file: cannot read "
                              f"{config.kafka_options_file}: {exc.strerror}") from None
        for number, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith(("#", "!")):
                entries.append((f"{config.kafka_options_file}:{number}", line))
    entries.extend(("kafka_options", entry) for entry in config.kafka_options)
    found: dict[str, str] = {}
    for where, entry in entries:
        key, sep, value = entry.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{where}: expected key=value (e.g. security.protocol=SSL)")
        if key in KAFKA_RESERVED_OPTIONS:
            raise ConfigError(f"{where}: {key} is set by Conveyor and cannot be changed")
        found[key] = value.strip()
    return found


def backpressure_thresholds(config: Config) -> dict[str, tuple[int, int]]:
    """``{queue: (warn, critical)}`` from ``backpressure_queues``; ``"*"`` is the default."""
    found = {"*": (config.backpressure_warn_depth, config.backpressure_critical_depth)}
    for entry in config.backpressure_queues:
        queue, _, levels = entry.partition("=")
        warn, _, critical = levels.partition(":")
        try:
            found[queue.strip()] = (int(warn), int(critical))
        except ValueError:
            raise ConfigError(f"backpressure_queues: expected queue=warn:critical, not "
                              f"{entry!r}") from None
        if not queue.strip() or int(warn) < 0 or int(critical) < 0:
            raise ConfigError(f"backpressure_queues: bad entry {entry!r}")
    return found
