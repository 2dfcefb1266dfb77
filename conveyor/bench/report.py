"""The benchmark report: the machine, the target, each workload's figures; as JSON and as
a Rich table."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from rich.table import Table

from .. import __version__

FORMAT_VERSION = 1


def machine() -> dict[str, Any]:
    """nproc, CPU model (from /proc/cpuinfo), memory, OS and Python."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib: float | None = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(), "cpu_model": model, "memory_gib": mem_gib,
        "kernel": platform.release(), "python": platform.python_version(),
        "implementation": sys.implementation.name,
    }


def new_report(command: list[str], target: dict[str, Any], options: dict[str, Any]
               ) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION, "tool": "conveyor bench", "conveyor_version": __version__,
        "command": " ".join(command), "machine": machine(), "target": target,
        "options": options, "results": {}, "ceilings": {},
    }


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _cpu(result: dict[str, Any], nproc: int | None = None) -> str:
    cpu = result.get("cpu") or {}
    parts = [f"{name} {_fmt(v.get('us_per_op'))}" for name, v in cpu.items()
             if v.get("us_per_op") is not None and v.get("cpu_s", 0) > 0]
    others = cpu.get("others", {}).get("cores")
    if others is not None and others >= 0.1:
        parts.append(f"[yellow]others busy {others:.1f} cores[/]")
    busy = busy_cores(result)
    if parts and busy is not None and nproc:
        parts.append(f"busy {busy:.2f} of {nproc} cores")
    return ", ".join(parts) or "-"


def busy_cores(result: dict[str, Any]) -> float | None:
    """Cores the whole machine kept busy during the workload's window: every group's, and
    the rest of the machine's (``others``), so a workload that ran out of CPU shows it.
    None without the machine's own count."""
    cpu = result.get("cpu") or {}
    if "others" not in cpu:
        return None
    return round(float(sum(v.get("cores", 0.0) for v in cpu.values())), 2)


def _pool_detail(pool: dict[str, Any] | None) -> str:
    if not pool:
        return ""
    return (f"; pool {pool['busy_share'] * 100:.0f} % on a core, "
            f"{pool['runqueue_share'] * 100:.0f} % waiting for one, "
            f"{pool['idle_share'] * 100:.0f} % idle")


def _sweep(points: list[dict[str, Any]] | None) -> str:
    """B2's points when it ran at several connection counts."""
    if not points:
        return ""
    return "; sweep " + ", ".join(
        f"{p['connections']}: {_fmt(p['throughput_per_s'])} (p95 {_fmt(p['p95_ms'], 1)})"
        for p in points)


def headline(result: dict[str, Any]) -> tuple[str, str]:
    """The one figure each workload is judged by, and its detail line."""
    w = result.get("workload")
    if "error" in result:
        return "error", str(result["error"])[:120]
    if w == "b1":
        load = result["load"]
        published = load.get("published_s")
        in_log = f", all in the log after {published:.2f} s" if published is not None else ""
        return (f"{_fmt(result['ops_per_s'])} ops/s",
                f"{_fmt(result['ops'])} ops in {result['duration_s']:.2f} s "
                f"(wall {result['wall_s']:.2f} s, {result['mode']}); "
                f"load {_fmt(load['ops_per_s'])} ops/s{in_log}")
    if w == "b2":
        lat = result["latency_ms"]
        return (f"{_fmt(result['throughput_per_s'])} req/s",
                f"p50 {_fmt(lat['p50'], 1)} / p95 {_fmt(lat['p95'], 1)} / "
                f"p99 {_fmt(lat['p99'], 1)} ms; {result['connections']} connections; "
                f"non-2xx {sum(v for k, v in result['statuses'].items() if k[0] != '2')}"
                + _sweep(result.get("sweep")))
    if w == "b2b":
        lat = result["batch_latency_ms"]
        return (f"{_fmt(result['ops_per_s'])} ops/s",
                f"batches of {result['batch']}, {result['connections']} in flight; "
                f"batch p50 {_fmt(lat['p50'], 1)} / p99 {_fmt(lat['p99'], 1)} ms")
    if w in ("b3", "b3h"):
        s, f = result["enqueue_to_start_ms"], result["enqueue_to_finish_ms"]
        sub = result["submit_latency_ms"]
        return (f"start p50 {_fmt(s['p50'], 1)} ms",
                f"{_fmt(result['rate_per_s'])}/s: to start p99 {_fmt(s['p99'], 1)} / "
                f"p99.9 {_fmt(s['p999'], 1)}; to finish p50 {_fmt(f['p50'], 1)} / "
                f"p99 {_fmt(f['p99'], 1)} / p99.9 {_fmt(f['p999'], 1)}; submit p99 "
                f"{_fmt(sub['p99'], 1)} ms" + (" (generator saturated)"
                                                if result.get("generator_saturated") else "")
                + _parts(result.get("enqueue_to_start_parts_ms")))
    if w == "b4":
        return (f"{result['efficiency'] * 100:.1f} % efficient",
                f"{_fmt(result['ops_per_s'], 1)} ops/s of {_fmt(result['ideal_ops_per_s'])} "
                f"ideal ({result['processes']} processes x {result['args']['ms']:g} ms)"
                + _pool_detail(result.get("pool")))
    if w == "b5":
        rss = result.get("worker_rss", {})
        if rss.get("growth_pct") is None:
            return "-", "too few samples after the warm-up"
        return (f"RSS {rss['growth_pct']:+.1f} % after warm-up",
                f"worker {rss['warm_mib']:.1f} -> max {rss['max_mib']:.1f} / end "
                f"{rss['end_mib']:.1f} MiB over {_fmt(result['ops'])} ops at "
                f"{_fmt(result['ops_per_s'])} ops/s ("
                + ("flat" if result.get("flat") else "[red]not flat[/]")
                + f", limit {result['flat_pct']:g} %)")
    return "", ""


def _parts(parts: dict[str, Any] | None) -> str:
    """B3 on a log: the two parts of the wait to start (see :mod:`.log_stages`)."""
    if not parts or not parts["to_log"]["count"]:
        return ""
    log, start = parts["to_log"], parts["log_to_start"]
    return (f"; to the log p50 {_fmt(log['p50'], 1)} / p99 {_fmt(log['p99'], 1)}, "
            f"log to start p50 {_fmt(start['p50'], 1)} / p99 {_fmt(start['p99'], 1)} ms")


def results_table(report: dict[str, Any]) -> Table:
    target = report["target"]
    table = Table(title=f"conveyor bench: {target.get('tier')} "
                        f"({report['machine']['nproc']} cores, {report['machine']['cpu_model']})")
    table.add_column("workload")
    table.add_column("result", justify="right")
    table.add_column("detail")
    table.add_column("CPU µs/op", justify="right")
    for result in report["results"].values():
        main, detail = headline(result)
        table.add_row(result.get("title", result.get("workload", "?")), main, detail,
                      _cpu(result, report["machine"].get("nproc")))
    return table


def ceilings_table(report: dict[str, Any]) -> Table | None:
    ceilings = report.get("ceilings") or {}
    if not ceilings:
        return None
    table = Table(title="stage ceilings (what bounds each stage)")
    table.add_column("stage")
    table.add_column("ceiling", justify="right")
    table.add_column("detail")
    for row in ceilings.get("rows", []):
        table.add_row(row["stage"], row["value"], row.get("detail", ""))
    comparisons = ceilings.get("comparisons", [])
    for c in comparisons:
        table.add_row(f"[bold]{c['workload']}[/] vs {c['stage']}",
                      c.get("shown") or (f"{c['ratio'] * 100:.0f} %"
                                         if c.get("ratio") is not None else "-"),
                      c.get("detail", ""))
    return table
