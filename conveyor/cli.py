"""The ``conveyor`` command: running the parts (this module) and the HTTP clients
(:mod:`conveyor.cli_client`). Errors are one clear line and a non-zero exit, never a
traceback."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from .cli_client import register_client_commands
from .cli_keys import register_key_commands
from .config import Config, load_config
from .errors import ConfigError, ConveyorError
from .observability.logging import configure as configure_logging

app = typer.Typer(
    name="conveyor", no_args_is_help=True, add_completion=False,
    help="Conveyor: a distributed job execution engine.",
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL (CONVEYOR_STORE); "
                                              "default sqlite:///conveyor.db")]
HostOpt = Annotated[str | None, typer.Option("--host", help="Listen address (CONVEYOR_HOST)")]
PortOpt = Annotated[int | None, typer.Option("--port", help="Listen port (CONVEYOR_PORT)")]
TasksOpt = Annotated[str | None, typer.Option(
    "--tasks", help="Comma-separated task modules to load (CONVEYOR_TASKS)")]
QueuesOpt = Annotated[str | None, typer.Option(
    "--queues", help="Comma-separated queues to serve (CONVEYOR_QUEUES)")]
ConcurrencyOpt = Annotated[int | None, typer.Option(
    "--concurrency", help="Operations in flight per worker (CONVEYOR_CONCURRENCY)")]
ClaimAheadOpt = Annotated[int | None, typer.Option(
    "--claim-ahead", help="Operations claimed beyond free slots, waiting to start; more "
    "throughput for short tasks, but a killed worker costs each an attempt "
    "(CONVEYOR_CLAIM_AHEAD, default 0)")]
ProcessesOpt = Annotated[int | None, typer.Option(
    "--processes", help="Process pool size for def tasks (CONVEYOR_PROCESSES)")]
TransportOpt = Annotated[str | None, typer.Option(
    "--transport", help="store or kafka (CONVEYOR_TRANSPORT)")]
KafkaOpt = Annotated[str | None, typer.Option(
    "--kafka-bootstrap", help="Kafka bootstrap servers (CONVEYOR_KAFKA_BOOTSTRAP)")]
PartitionsOpt = Annotated[int | None, typer.Option(
    "--kafka-partitions", help="Partitions of each queue's topic when created "
    "(CONVEYOR_KAFKA_PARTITIONS, default 12)")]
PrefixOpt = Annotated[str | None, typer.Option(
    "--kafka-topic-prefix", help="Topic and group name prefix (CONVEYOR_KAFKA_TOPIC_PREFIX, "
    "default 'conveyor.')")]
KafkaOptionOpt = Annotated[list[str] | None, typer.Option(
    "--kafka-option", help="A Kafka client property key=value for every producer, consumer "
    "and admin client, e.g. security.protocol=SASL_SSL; repeatable "
    "(CONVEYOR_KAFKA_OPTIONS, comma-separated)")]
KafkaOptionsFileOpt = Annotated[str | None, typer.Option(
    "--kafka-options-file", help="A file of Kafka client properties, key=value per line "
    "(CONVEYOR_KAFKA_OPTIONS_FILE): the place for passwords")]
RelayOpt = Annotated[bool | None, typer.Option(
    "--relay/--no-relay", help="Run the outbox relay in this process (Kafka tier; on by "
    "default; CONVEYOR_RELAY_IN_PROCESS)")]
MetricsPortOpt = Annotated[int | None, typer.Option(
    "--metrics-port", help="Serve /metrics and health probes on this port")]


def _split(value: str | None) -> tuple[str, ...] | None:
    return tuple(p.strip() for p in value.split(",") if p.strip()) if value else None


def _config(**flags: Any) -> Config:
    try:
        config = load_config(flags)
    except ConfigError as exc:
        fail(str(exc), code=2)
    configure_logging(config.log_level, config.log_format)
    return config


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _run(config: Config, *, api: bool, worker: bool, migrate: bool,
         relay: bool = False) -> None:
    from .server import serve_forever

    def ready(line: str) -> None:
        err.print(f"[bold green]Conveyor[/] {escape(line)}", highlight=False, soft_wrap=True)
        if api and not config.auth_required:
            err.print("Listening on loopback only: open access for local development "
                      "(requests without an API key act as tenant 'default' with every "
                      "scope; set CONVEYOR_AUTH=required to require keys).", highlight=False)
        elif api:
            err.print("API keys required (create one with `conveyor keys create`).",
                      highlight=False)

    try:
        serve_forever(config, api=api, worker=worker, migrate=migrate, on_ready=ready,
                      relay=relay)
    except ConveyorError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot start: {exc}")


@app.command()
def serve(store: StoreOpt = None, host: HostOpt = None, port: PortOpt = None,
          tasks: TasksOpt = None, queues: QueuesOpt = None,
          concurrency: ConcurrencyOpt = None, processes: ProcessesOpt = None,
          transport: TransportOpt = None, kafka_bootstrap: KafkaOpt = None,
          kafka_partitions: PartitionsOpt = None, kafka_topic_prefix: PrefixOpt = None,
          relay: RelayOpt = None, kafka_option: KafkaOptionOpt = None,
          kafka_options_file: KafkaOptionsFileOpt = None,
          claim_ahead: ClaimAheadOpt = None) -> None:
    """Run the API and a worker in one process (the embedded tier: SQLite by default)."""
    config = _config(store=store, host=host, port=port, tasks=_split(tasks),
                     queues=_split(queues), concurrency=concurrency, processes=processes,
                     claim_ahead=claim_ahead,
                     transport=transport, kafka_bootstrap=kafka_bootstrap,
                     kafka_partitions=kafka_partitions, kafka_topic_prefix=kafka_topic_prefix,
                     relay_in_process=relay, kafka_options=kafka_option or None,
                     kafka_options_file=kafka_options_file)
    _run(config, api=True, worker=True, migrate=config.store.startswith("sqlite"))


@app.command()
def api(store: StoreOpt = None, host: HostOpt = None, port: PortOpt = None,
        tasks: TasksOpt = None, transport: TransportOpt = None,
        kafka_bootstrap: KafkaOpt = None, kafka_partitions: PartitionsOpt = None,
        kafka_topic_prefix: PrefixOpt = None, relay: RelayOpt = None,
        kafka_option: KafkaOptionOpt = None,
        kafka_options_file: KafkaOptionsFileOpt = None) -> None:
    """Run the HTTP API only (workers run elsewhere on the same store)."""
    config = _config(store=store, host=host, port=port, tasks=_split(tasks),
                     transport=transport, kafka_bootstrap=kafka_bootstrap,
                     kafka_partitions=kafka_partitions, kafka_topic_prefix=kafka_topic_prefix,
                     relay_in_process=relay, kafka_options=kafka_option or None,
                     kafka_options_file=kafka_options_file)
    _run(config, api=True, worker=False, migrate=False)


@app.command()
def worker(store: StoreOpt = None, tasks: TasksOpt = None, queues: QueuesOpt = None,
           concurrency: ConcurrencyOpt = None, processes: ProcessesOpt = None,
           transport: TransportOpt = None, kafka_bootstrap: KafkaOpt = None,
           metrics_port: MetricsPortOpt = None, kafka_partitions: PartitionsOpt = None,
           kafka_topic_prefix: PrefixOpt = None, kafka_option: KafkaOptionOpt = None,
           kafka_options_file: KafkaOptionsFileOpt = None,
           claim_ahead: ClaimAheadOpt = None) -> None:
    """Run a worker only."""
    config = _config(store=store, tasks=_split(tasks), queues=_split(queues),
                     concurrency=concurrency, processes=processes, transport=transport,
                     claim_ahead=claim_ahead,
                     kafka_bootstrap=kafka_bootstrap, metrics_port=metrics_port,
                     kafka_partitions=kafka_partitions, kafka_topic_prefix=kafka_topic_prefix,
                     kafka_options=kafka_option or None,
                     kafka_options_file=kafka_options_file)
    _run(config, api=False, worker=True, migrate=False)


@app.command()
def relay(store: StoreOpt = None, kafka_bootstrap: KafkaOpt = None,
          transport: TransportOpt = None, kafka_partitions: PartitionsOpt = None,
          kafka_topic_prefix: PrefixOpt = None, host: HostOpt = None,
          metrics_port: MetricsPortOpt = None, kafka_option: KafkaOptionOpt = None,
          kafka_options_file: KafkaOptionsFileOpt = None) -> None:
    """Run the outbox relay only (Kafka tier): publish due operations to Kafka."""
    config = _config(store=store, transport=transport or "kafka",
                     kafka_bootstrap=kafka_bootstrap, kafka_partitions=kafka_partitions,
                     kafka_topic_prefix=kafka_topic_prefix, host=host,
                     metrics_port=metrics_port, kafka_options=kafka_option or None,
                     kafka_options_file=kafka_options_file)
    if config.transport != "kafka":
        fail("the relay serves the Kafka tier: --transport kafka", code=2)
    _run(config, api=False, worker=False, migrate=False, relay=True)


@app.command()
def migrate(store: StoreOpt = None) -> None:
    """Create or upgrade the store's schema (idempotent)."""
    import asyncio

    from .wiring import make_store

    config = _config(store=store)

    async def go() -> int:
        instance = make_store(config)
        try:
            return await instance.migrate()
        finally:
            await instance.close()

    try:
        version = asyncio.run(go())
    except ConveyorError as exc:
        fail(str(exc))
    out.print(f"schema at version {version} ({config.store_shown})", highlight=False)


register_client_commands(app, fail)
register_key_commands(app, fail, _config)


def _register_bench() -> None:
    from .bench.cli import bench

    app.command(name="bench", help="Benchmark a Conveyor server or a tier it starts: drain, "
                "closed and open loop, batch ingest, CPU-bound; stage ceilings.")(bench)


_register_bench()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
