"""Running Conveyor processes: the API, a worker, or both in one event loop.

``conveyor serve`` is :func:`run` with both; ``conveyor api`` and ``conveyor worker`` run
one part each. SIGINT/SIGTERM stop gracefully: the API stops accepting connections, the
worker stops claiming and finishes or releases its in-flight work, then the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Iterator, Sequence

import uvicorn

from .api.app import create_app
from .api.http_protocol import HTTP_SETTINGS
from .config import Config
from .errors import ConfigError
from .model import NewJob
from .observability.metrics import Metrics
from .observability.probe import probe_app
from .observability.tracing import Tracing
from .relay import Relay
from .store.base import Store
from .tasks import Registry
from .wiring import (
    make_kafka_client,
    make_readiness,
    make_relay,
    make_service,
    make_store,
    make_transport,
    transport_depth,
)
from .worker.runner import Worker

log = logging.getLogger("conveyor")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process stops API and worker together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def open_store(config: Config, *, migrate: bool) -> Store:
    """The configured store, migrated first when asked (the embedded tier does), opened."""
    store = make_store(config)
    if migrate:
        await store.migrate()
    await store.open()
    if config.transport == "kafka":
        from .store.base import OutboxStore

        if isinstance(store, OutboxStore):
            try:
                await store.enable_outbox()
            except BaseException:
                await store.close()
                raise
    return store


async def run(
    config: Config,
    *,
    api: bool,
    worker: bool,
    migrate: bool = False,
    on_ready: Callable[[str], None] | None = None,
    handle_signals: bool = True,
    relay: bool = False,
) -> None:
    """Run until SIGINT/SIGTERM (or until cancelled). ``on_ready`` gets a one-line
    description once serving. Embedders running it off the main thread pass
    ``handle_signals=False`` and cancel the task to stop it gracefully."""
    registry = Registry.load(config.tasks)
    store = await open_store(config, migrate=migrate)
    metrics = Metrics()
    relay = relay or (api and config.transport == "kafka" and config.relay_in_process)
    role = ("conveyor" if api and worker else "conveyor-api" if api
            else "conveyor-worker" if worker else "conveyor-relay")
    tracing = Tracing(config.otel_traces_exporter, role)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

    workers: list[Worker] = []
    kafka_client = make_kafka_client(config, metrics)
    transport = make_transport(config, store, kafka_client=kafka_client,
                               stopping=stop) if worker else None
    if worker:
        assert transport is not None
        workers.append(Worker(config, store, transport, registry, metrics=metrics,
                              tracing=tracing))

    relays: list[Relay] = []

    async def on_submit(jobs: Sequence[NewJob]) -> None:
        metrics.count_submitted(jobs)
        for r in relays:  # this process's relay publishes its own submissions at once
            r.wake()
        if transport is not None:
            await transport.wake()

    service = make_service(config, store, registry, on_submit=on_submit,
                           kafka_client=kafka_client)
    readiness = make_readiness(config, store, kafka_client=kafka_client, transport=transport)
    if transport is not None and hasattr(transport, "not_ready"):
        metrics.transport_waiting.set_function(
            lambda: float(getattr(transport, "not_ready", None) is not None))
    depth = transport_depth(service)
    servers: list[_Server] = []
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(w.run()) for w in workers]
    if api:
        servers.append(_http_server(create_app(
            service, config, metrics=metrics, tracing=tracing, readiness=readiness,
            depth_sources=[depth] if depth else []), config.host, config.port))
    if config.metrics_port and not api:
        servers.append(_http_server(probe_app(metrics, readiness), config.host,
                                    config.metrics_port))
    for server in servers:
        tasks.append(asyncio.create_task(server.serve()))
    if relay:
        relays.append(make_relay(config, store, metrics, kafka_client))
        tasks.append(asyncio.create_task(relays[0].run(stop)))
    while not all(s.started for s in servers) and not any(t.done() for t in tasks):
        await asyncio.sleep(0.02)
    if on_ready is not None and not any(t.done() for t in tasks):
        parts = ([f"API on http://{config.host}:{config.port}"] if api else []) + (
            [f"probes on http://{config.host}:{config.metrics_port}"]
            if config.metrics_port and not api else []) + (
            [f"worker {workers[0].id} ({len(registry)} tasks, queues "
             f"{','.join(workers[0].queues)})"] if workers else []) + (
            [f"relay to Kafka at {config.kafka_bootstrap}"] if relays else [])
        on_ready(", ".join(parts) + f"; store {config.store_shown}")
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for server in servers:
            server.should_exit = True
        for w in workers:
            w.request_stop()
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        for r in relays:
            r.close()
        await store.close()
        tracing.shutdown()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError):
                raise result


def _http_server(app: object, host: str, port: int) -> _Server:
    return _Server(uvicorn.Config(app, host=host, port=port, **HTTP_SETTINGS))  # type: ignore[arg-type]


def loop_factory(config: Config) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory ``config.event_loop`` asks for (None: asyncio's default)."""
    if config.event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if config.event_loop == "uvloop":
            raise ConfigError("event_loop uvloop: uvloop is not installed "
                              "(pip install uvloop)") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


GC_THRESHOLDS = (50_000, 20, 20)
"""The cyclic garbage collector's thresholds in a server process (Python's are 700, 10,
10): see :func:`tune_gc`."""


def tune_gc() -> None:
    """Collect cyclic garbage less often, and never rescan what start-up allocated.

    A batch of 1,000 submissions allocates some 20,000 containers (parsed JSON, the
    submitted values, rows), almost all freed by reference counting; at Python's
    thresholds they still set off about 30 collections of the young generation per batch,
    and older ones that scanned every module object imported at start-up. Measured on
    the embedded tier, 3 rounds each: B1's load (workers paused) 31,332-42,001 ops/s
    without this, 44,675-47,436 with the freeze alone, 44,896-52,288 with it; B2b
    32,753-38,348, 38,475-39,514, 41,141-44,923. Cyclic garbage is still collected, after
    50,000 net allocations instead of 700."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve_forever(config: Config, *, api: bool, worker: bool, migrate: bool,
                  on_ready: Callable[[str], None] | None = None, relay: bool = False) -> None:
    tune_gc()
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(
            loop_factory=loop_factory(config)) as runner:
        runner.run(run(config, api=api, worker=worker, migrate=migrate, on_ready=on_ready,
                       relay=relay))
