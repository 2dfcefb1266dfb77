"""``conveyor bench``: one command, registered by :mod:`conveyor.cli` as ``bench``.

Runs the selected workloads against ``--url`` or a tier it starts itself, shows progress,
prints a table and writes the JSON report (``--out``). Exit code 1 when a workload failed
or timed out (its error is in the report), 2 for bad arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ..config import Config
from .ceilings import CEILINGS, run_ceilings
from .context import Bench, BenchTimeout, Options, Phase
from .http import LoadError, loopback_target
from .memory import EXTRA_WORKLOADS
from .procstat import Sampler
from .report import ceilings_table, new_report, results_table
from .tiers import EmbeddedTier, ExternalTarget, KafkaTier, PostgresTier, Target, TierError
from .workloads import AFTER_B2, WORKLOADS

SELECTABLE = {**WORKLOADS, **AFTER_B2, **EXTRA_WORKLOADS}

bench_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                        help="Benchmark a Conveyor server: drain, closed/open loop, batch "
                             "ingest, CPU-bound; stage ceilings.")
out = Console()
err = Console(stderr=True)


class _RichPhase:
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def update(self, completed: float, total: float | None = None) -> None:
        if total is not None:
            self._progress.update(self._task, completed=completed, total=total)
        else:
            self._progress.update(self._task, completed=completed)

    def done(self) -> None:
        self._progress.stop_task(self._task)


class RichReporter:
    """Progress bars on stderr (when it is a terminal) and notes."""

    def __init__(self, quiet: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err, refresh_per_second=4,
            disable=quiet or not err.is_terminal,
        )
        self.quiet = quiet

    def phase(self, description: str, total: float | None) -> Phase:
        return _RichPhase(self.progress, self.progress.add_task(description, total=total))

    def note(self, message: str) -> None:
        if not self.quiet:
            self.progress.console.print(message, highlight=False)


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


SIGTERM_EXIT = 143
"""Exit status of a run ended by SIGTERM (128 + 15, as the shell reports it)."""


def _cancel_on_sigterm() -> None:
    """From within the benchmark's task: SIGTERM cancels it, so each workload stops the
    servers it started on the way out (by default SIGTERM ends the benchmark alone, and
    they run on)."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def make_target(*, url: str | None, tier: str, store: str | None,
                kafka_bootstrap: str | None, processes: int, concurrency: int,
                sqlite_synchronous: str, workdir: Path, profile: Path | None,
                server_pid: int | None, workers: int | None = None,
                relay: str | None = None) -> Target:
    """The target the options describe; an option that does not apply to it (the
    tier's own options with ``--url`` or another tier) is refused, not ignored."""
    started = "a running server (--url)" if url else f"the {tier} tier"
    if relay is not None and (url or tier != "kafka"):
        raise TierError(f"--relay applies to the kafka tier only, not to {started}")
    if workers is not None and (url or tier not in ("postgres", "kafka")):
        raise TierError(f"--workers applies to the postgres and kafka tiers only, not to "
                        f"{started}")
    if url:
        loopback_target(url)
        return ExternalTarget(url, processes, server_pid=server_pid)
    common: dict[str, Any] = {"profile_dir": profile}
    if tier == "embedded":
        return EmbeddedTier(workdir, processes, concurrency,
                            sqlite_synchronous=sqlite_synchronous.upper(), **common)
    if tier == "postgres":
        return PostgresTier(store or "", workdir, processes, concurrency, workers=workers,
                            **common)
    if tier == "kafka":
        return KafkaTier(store or "", workdir, processes, concurrency, workers=workers,
                         kafka_bootstrap=kafka_bootstrap, relay=relay or "api", **common)
    raise TierError(f"unknown tier {tier!r}: embedded, postgres or kafka")


async def run_bench(target: Target, names: list[str], ceilings: list[str], options: Options,
                    reporter: RichReporter, report: dict[str, Any],
                    store_url: str | None, workdir: Path,
                    sqlite_synchronous: str = "FULL",
                    kafka_bootstrap: str | None = None) -> bool:
    """Run every selected workload (and ceiling) into ``report``; False if any failed."""
    _cancel_on_sigterm()
    groups = {**target.groups(), "generator": lambda: [os.getpid()]}
    sampler = Sampler(groups, interval_s=0.1, pool=groups.get(target.pool_group)).start()
    bench = Bench(target, sampler, options, reporter, report["results"])
    ok = True
    try:
        for name in names:
            try:
                report["results"][name] = await SELECTABLE[name](bench)
            except (BenchTimeout, LoadError, TierError, OSError) as exc:
                ok = False
                report["results"][name] = {"workload": name, "title": name.upper(),
                                           "error": f"{type(exc).__name__}: {exc}"}
                reporter.note(f"[red]{name}: {exc}[/]")
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(target.stop)
        if ceilings:
            report["ceilings"] = await run_ceilings(
                ceilings, options, reporter, sampler, report["results"],
                store_url=store_url, workdir=workdir / "ceilings",
                processes=target.processes, sqlite_synchronous=sqlite_synchronous,
                kafka_bootstrap=kafka_bootstrap, tier=report["target"].get("tier"))
    finally:
        sampler.stop()
    return ok


def _b2_before(names: list[str], name: str) -> bool:
    """A B2 runs before ``name`` (one of ``names``), to take a share of its throughput."""
    return "b2" in names and names.index("b2") < names.index(name)


def _check_after_b2(names: list[str]) -> None:
    """Workloads that run at a share of B2's throughput need a B2 before them."""
    for name in names:
        if name in AFTER_B2 and not _b2_before(names, name):
            raise typer.BadParameter(f"{name} runs at half of B2's throughput: it needs b2 "
                                     f"before it in --workloads")


def _parse_rate(value: str, names: list[str]) -> tuple[float, float | None]:
    """``--rate``: arrivals per second, or ``half-b2`` (B3 then follows a B2 of the same
    run). Returns the rate and the fraction of B2's throughput (None for a fixed rate)."""
    if value.strip().lower() == "half-b2":
        if "b3" in names and not _b2_before(names, "b3"):
            raise typer.BadParameter("--rate half-b2 needs b2 before b3 in --workloads")
        return Options.b3_rate_per_s, 0.5  # the fixed rate stays unused
    try:
        rate_per_s = float(value)
    except ValueError:
        raise typer.BadParameter(f"--rate: a number of arrivals per second or half-b2, "
                                 f"not {value!r}") from None
    if not 1.0 <= rate_per_s < math.inf:
        raise typer.BadParameter(f"--rate: at least 1 arrival per second, not {value!r}")
    return rate_per_s, None


def _parse_counts(value: str, option: str) -> list[int]:
    """Comma-separated whole numbers of at least 1, in the order given, each once."""
    counts = []
    for part in (p.strip() for p in value.split(",")):
        if not part.isdigit() or int(part) < 1:
            raise typer.BadParameter(f"{option}: whole numbers of at least 1, comma-"
                                     f"separated, not {value!r}")
        counts.append(int(part))
    return list(dict.fromkeys(counts))


def _ceiling_names(value: str, kafka_bootstrap: str | None) -> list[str]:
    """``--ceilings``: ``none``, ``all`` (the log's only with a broker to measure), or
    names; the log's ceiling named without ``--kafka-bootstrap`` is refused."""
    names = _parse_list(value, CEILINGS, "ceiling")
    if "kafka" in names and not kafka_bootstrap:
        if value.strip().lower() == "all":
            return [n for n in names if n != "kafka"]
        raise typer.BadParameter("the kafka ceiling needs --kafka-bootstrap host:port")
    return names


def _parse_list(value: str, known: dict[str, Any] | tuple[str, ...], what: str,
                everything: dict[str, Any] | tuple[str, ...] | None = None) -> list[str]:
    """Comma-separated names of ``known``; ``none`` is none, ``all`` is ``everything``
    (default: every known one)."""
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    if names == ["none"]:
        return []
    if names == ["all"]:
        return list(known if everything is None else everything)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise typer.BadParameter(f"unknown {what} {', '.join(unknown)} "
                                 f"(choose from {', '.join(known)})")
    return names


@bench_app.command()
def bench(
    url: Annotated[str | None, typer.Option(
        "--url", help="Benchmark this running server (loopback only) instead of starting "
                      "a tier")] = None,
    tier: Annotated[str, typer.Option(
        "--tier", help="Tier to start when no --url: embedded, postgres or kafka")
    ] = "embedded",
    store: Annotated[str | None, typer.Option(
        "--store", help="Store URL for --tier postgres|kafka (postgresql://...)")] = None,
    kafka_bootstrap: Annotated[str | None, typer.Option(
        "--kafka-bootstrap", help="The broker of --tier kafka, and of the kafka ceiling "
                                  "(with any target)")] = None,
    workloads: Annotated[str, typer.Option(
        "--workloads", "-w", help="Comma-separated: b1,b2,b2b,b3,b3h,b4,b5 (all: b1 to "
                                  "b4; b3h, B3 at half of B2, after a b2; b5, the long "
                                  "memory run, only when named; none: only the "
                                  "ceilings)")] = "all",
    ceilings: Annotated[str, typer.Option(
        "--ceilings", help="Stage ceilings to measure too: asgi,api-memory,parse,store,"
                           "pool,kafka (or all, or none)")] = "none",
    ops: Annotated[int, typer.Option("--ops", min=1, help="B1: operations to drain")
                   ] = 50_000,
    connections: Annotated[str, typer.Option(
        "--connections", help="B2: concurrent submitters; several (64,128,256) run B2 at "
                              "each and keep the highest throughput with p95 under "
                              "150 ms (what --rate half-b2 then halves)")] = "64",
    duration_s: Annotated[float, typer.Option(
        "--duration", min=0.1, help="B2: measured seconds")] = 10.0,
    warmup_s: Annotated[float, typer.Option("--warmup", min=0.0, help="B2: warm-up seconds")
                        ] = 1.0,
    requests: Annotated[int, typer.Option(
        "--requests", min=0, help="B2: stop after this many requests (0: by --duration)")
    ] = 0,
    batch_ops: Annotated[int, typer.Option("--batch-ops", min=1, help="B2b: operations")
                         ] = 100_000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=5000,
                                            help="B1/B2b/B4: jobs per batch request")] = 1000,
    batch_connections: Annotated[int, typer.Option(
        "--batch-connections", min=1, help="B1/B2b/B4: batches in flight")] = 2,
    rate: Annotated[str, typer.Option(
        "--rate", help="B3: arrivals per second, or half-b2 (half the B2 throughput "
                       "measured before it in this run)")] = "200",
    rate_duration_s: Annotated[float, typer.Option(
        "--rate-duration", min=0.1, help="B3: seconds of arrivals")] = 10.0,
    cpu_ops: Annotated[int, typer.Option("--cpu-ops", min=1, help="B4: operations")] = 1000,
    cpu_ms: Annotated[float, typer.Option("--cpu-ms", min=0.1, help="B4: ms of CPU each")
                      ] = 10.0,
    mem_ops: Annotated[int, typer.Option(
        "--mem-ops", min=1, help="B5: operations streamed while the worker's RSS is "
                                 "sampled")] = 1_000_000,
    mem_backlog: Annotated[int, typer.Option(
        "--mem-backlog", min=1, help="B5: keep at most this many operations unfinished")
    ] = 20_000,
    processes: Annotated[int, typer.Option(
        "--processes", min=1, help="Server's process pool size (and B4's ideal)")
    ] = os.cpu_count() or 1,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", min=1, help="Operations in flight per worker")
    ] = Config().concurrency,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Postgres and kafka tiers: worker processes to start "
                                 "(default 1; the pool's --processes are shared out "
                                 "among them)")] = None,
    relay: Annotated[str | None, typer.Option(
        "--relay", help="Kafka tier: run the outbox relay inside the API process (api, "
                        "the default) or as its own process (separate)")] = None,
    sqlite_synchronous: Annotated[str, typer.Option(
        "--sqlite-synchronous", help="Embedded tier: FULL (fsync per commit) or NORMAL")
    ] = "FULL",
    deadline_s: Annotated[float, typer.Option(
        "--deadline", min=1.0, help="Give up on a workload after this many seconds")
    ] = 300.0,
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here")
                        ] = None,
    workdir: Annotated[Path | None, typer.Option(
        "--workdir", help="Keep server logs and databases here (default: a temporary "
                          "directory, removed afterwards)")] = None,
    profile: Annotated[Path | None, typer.Option(
        "--profile", help="Run the servers under py-spy; write collapsed stacks here")
    ] = None,
    server_pid: Annotated[int | None, typer.Option(
        "--server-pid", help="With --url: the server's pid for CPU accounting (default: "
                             "the process listening on the URL's port)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no table")
                     ] = False,
) -> None:
    """Measure throughput, latency and CPU cost of a Conveyor server."""
    names = _parse_list(workloads, SELECTABLE, "workload", everything=WORKLOADS)
    ceiling_names = _ceiling_names(ceilings, kafka_bootstrap)
    if not names and not ceiling_names:
        raise typer.BadParameter("nothing to run: name a workload (-w) or a ceiling "
                                 "(--ceilings)")
    if sqlite_synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
        raise typer.BadParameter("--sqlite-synchronous: FULL, NORMAL or EXTRA")
    _check_after_b2(names)
    rate_per_s, rate_of_b2 = _parse_rate(rate, names)
    b2_connections = _parse_counts(connections, "--connections")
    options = Options(
        b1_ops=ops, load_batch=batch_size, load_connections=batch_connections,
        b2_connections=b2_connections[0], b2_sweep=tuple(b2_connections[1:]),
        b2_duration_s=duration_s, b2_warmup_s=warmup_s,
        b2_requests=requests, b2b_ops=batch_ops, b2b_batch=batch_size,
        b2b_connections=batch_connections, b3_rate_per_s=rate_per_s,
        b3_rate_of_b2=rate_of_b2,
        b3_duration_s=rate_duration_s, b4_ops=cpu_ops, b4_ms=cpu_ms, mem_ops=mem_ops,
        mem_backlog=mem_backlog, deadline_s=deadline_s,
    )
    with contextlib.ExitStack() as stack:
        if workdir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-bench-")))
        else:
            work = workdir.resolve()
            work.mkdir(parents=True, exist_ok=True)
        try:
            target = make_target(url=url, tier=tier, store=store,
                                 kafka_bootstrap=kafka_bootstrap, processes=processes,
                                 concurrency=concurrency,
                                 sqlite_synchronous=sqlite_synchronous, workdir=work,
                                 profile=profile.resolve() if profile else None,
                                 server_pid=server_pid, workers=workers, relay=relay)
        except (TierError, LoadError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        report = new_report(["conveyor", "bench", *sys.argv[1:]] if "bench" not in sys.argv
                            else ["conveyor", *sys.argv[sys.argv.index("bench"):]],
                            target.describe(), {**vars(options), "workloads": names,
                                                "ceilings": ceiling_names})
        report["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        reporter = RichReporter(quiet)
        store_url = store if tier != "embedded" and not url else None
        try:
            with reporter.progress, _event_loop_runner() as runner:
                ok = runner.run(run_bench(target, names, ceiling_names, options, reporter,
                                          report, store_url, work,
                                          sqlite_synchronous.upper(), kafka_bootstrap))
        except asyncio.CancelledError:  # SIGTERM (see _cancel_on_sigterm)
            err.print("[bold red]stopped by SIGTERM[/]: stopping the servers it started",
                      highlight=False)
            raise typer.Exit(SIGTERM_EXIT) from None
        finally:
            target.stop()
        if profile is not None:
            from .profile import summarize_profiles

            report["profile"] = summarize_profiles(target.profiles())
    report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=2) + "\n")
    if not quiet:
        if names:
            out.print(results_table(report))
        table = ceilings_table(report)
        if table is not None:
            out.print(table)
        if report.get("profile"):
            from .profile import profile_table

            out.print(profile_table(report["profile"]))
        if out_path is not None:
            err.print(f"wrote {out_path}", highlight=False)
    if not ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    bench_app()
