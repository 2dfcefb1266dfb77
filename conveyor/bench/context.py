"""What every workload shares: options, the run's context, a deadline, progress
reporting and the CPU report of a measured window."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .http import LoadError
from .procstat import MACHINE, Sampler
from .tiers import Target

TERMINAL = ("succeeded", "dead", "cancelled")
NOOP: dict[str, Any] = {"task": "sys.noop", "args": {}}
TRANSIENT = (OSError, ConnectionError, TimeoutError, LoadError)


class BenchTimeout(Exception):
    """A workload did not finish before its deadline."""


class Phase(Protocol):
    def update(self, completed: float, total: float | None = None) -> None: ...

    def done(self) -> None: ...


class Reporter(Protocol):
    def phase(self, description: str, total: float | None) -> Phase: ...

    def note(self, message: str) -> None: ...


class _NullPhase:
    def update(self, completed: float, total: float | None = None) -> None:
        return None

    def done(self) -> None:
        return None


class NullReporter:
    def phase(self, description: str, total: float | None) -> Phase:
        return _NullPhase()

    def note(self, message: str) -> None:
        return None


@dataclass
class Options:
    """Sizes and bounds of every workload (the CLI's flags)."""

    b1_ops: int = 50_000
    load_batch: int = 1000
    load_connections: int = 2
    b2_connections: int = 64
    b2_sweep: tuple[int, ...] = ()
    """More submitter counts to run B2 with after ``b2_connections`` (a sweep): B2 keeps
    the point with the highest throughput whose p95 is under ``b2_p95_bound_ms``."""
    b2_p95_bound_ms: float = 150.0
    b2_duration_s: float = 10.0
    b2_warmup_s: float = 1.0
    b2_requests: int = 0
    """Stop after this many measured requests (0: run for ``b2_duration_s``)."""
    b2b_ops: int = 100_000
    b2b_batch: int = 1000
    b2b_connections: int = 2
    b3_rate_per_s: float = 200.0
    b3_rate_of_b2: float | None = None
    """When set, B3's arrivals per second are this fraction of the B2 throughput measured
    earlier in the same run, instead of ``b3_rate_per_s`` (the targets' "half of B2's
    maximum rate" is 0.5)."""
    b3_duration_s: float = 10.0
    b3_connections: int = 256
    b3_sample: int = 5000
    b4_ops: int = 1000
    b4_ms: float = 10.0
    mem_ops: int = 1_000_000
    """B5: operations streamed through the workers while their RSS is sampled."""
    mem_backlog: int = 20_000
    """B5: submitted but unfinished operations are kept below this."""
    mem_poll_s: float = 1.0
    mem_warmup_fraction: float = 0.1
    mem_flat_pct: float = 10.0
    deadline_s: float = 300.0
    """Every workload gives up (and says so) after this long."""
    poll_s: float = 0.25
    """How often a drain asks whether it has finished. Drains are timed from the
    operations' own timestamps, so this bounds only ``wall_s``; every poll is work for the
    system measured (on the Kafka tier a queue count also asks the broker for lag)."""


@dataclass
class Bench:
    target: Target
    sampler: Sampler
    options: Options
    reporter: Reporter
    results: dict[str, Any] = field(default_factory=dict)
    """What the workloads run before this one reported, by name."""

    async def start(self, *, workers: bool = True) -> None:
        """Start the target (its workers held back unless ``workers``), then sample.

        The sample is taken as the processes start: a window that begins and ends before
        the sampler's next tick (a load of 1,000 operations, a B2 of 300 requests) would
        otherwise hold no sample of them, and they would have no share of its CPU."""
        await asyncio.to_thread(self.target.start, workers=workers)
        await asyncio.to_thread(self.sampler.sample_now)

    async def start_workers(self) -> None:
        """Start the workers held back by :meth:`start`, then sample (see there)."""
        await asyncio.to_thread(self.target.start_workers)
        await asyncio.to_thread(self.sampler.sample_now)


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise BenchTimeout(f"{what}: not finished within {self.seconds:g} s")


async def progress_ticker(phase: Phase, read: Callable[[], float],
                          interval_s: float = 0.25) -> None:
    while True:
        phase.update(read())
        await asyncio.sleep(interval_s)


def cpu_report(sampler: Sampler, start: float, end: float, ops: int) -> dict[str, Any]:
    """CPU seconds per process group in ``[start, end]``, per operation and in cores."""
    window = max(end - start, 1e-9)
    out: dict[str, Any] = {}
    used = sampler.cpu_window(start, end)
    machine = used.pop(MACHINE, None)
    for name, cpu_s in used.items():
        out[name] = {
            "cpu_s": round(cpu_s, 3),
            "cores": round(cpu_s / window, 2),
            "us_per_op": round(cpu_s / ops * 1e6, 1) if ops else None,
        }
    if machine is not None:
        # Everything else the machine did meanwhile (other users' processes): a benchmark
        # on a busy machine says so instead of passing its noise off as a result.
        others = max(0.0, machine - sum(used.values()))
        out["others"] = {"cpu_s": round(others, 3), "cores": round(others / window, 2),
                         "us_per_op": None}
    return out
