"""Conveyor and its peers side by side, interleaved, several repetitions.

    python -m benchmarks.compare --redis redis://127.0.0.1:P/0 --postgres postgresql://...

Each repetition runs every system once, in the same order (A B C D A B C D ...), so slow
drifts of the machine (other load, thermal, page cache) spread over all systems instead of
favouring one. Conveyor runs ``conveyor bench`` on each tier: ``conveyor`` is the embedded
tier (B1, B2, B2b, B3, B3H, B4; the first repetition also measures the stage ceilings),
``conveyor-postgres`` and ``conveyor-kafka`` run B1, B2, B3, B3H and B4 on a fresh PostgreSQL
database per run (``--postgres``; Kafka also needs ``--kafka``). Each peer runs
``benchmarks.peers.harness`` (B1, B3, B4) in the peers' virtual environment with the same
worker process count and sizes. Every run's JSON is kept in ``--out-dir``; ``summary.json``
holds the medians, the Conveyor/peer ratios and each system's durability settings.

Runs in Conveyor's environment (it needs rich); the peers run in ``--peers-python``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from conveyor.bench.report import busy_cores

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
    "conveyor-bench" / "venv"
PEERS = ("celery", "dramatiq", "pgqueuer")
TIERS = {"conveyor": "embedded", "conveyor-postgres": "postgres", "conveyor-kafka": "kafka"}
console = Console()

# (workload, path into its result, label, higher_is_better)
METRICS: list[tuple[str, tuple[str, ...], str, bool]] = [
    ("b1", ("ops_per_s",), "B1 drain ops/s", True),
    ("b1", ("cpu_us_per_op",), "B1 CPU µs/op (system)", False),
    ("b2", ("throughput_per_s",), "B2 closed loop req/s", True),
    ("b2", ("latency_ms", "p95"), "B2 p95 ms", False),
    ("b2", ("cores_busy",), "B2: cores busy", False),
    ("b2b", ("ops_per_s",), "B2b batch ingest ops/s", True),
    ("b3", ("enqueue_to_start_ms", "p50"), "B3 enqueue→start p50 ms", False),
    ("b3", ("enqueue_to_start_ms", "p99"), "B3 enqueue→start p99 ms", False),
    ("b3", ("enqueue_to_finish_ms", "p50"), "B3 enqueue→finish p50 ms", False),
    ("b3", ("enqueue_to_finish_ms", "p99"), "B3 enqueue→finish p99 ms", False),
    ("b3h", ("rate_per_s",), "B3 at half of B2: arrivals/s", True),
    ("b3h", ("enqueue_to_start_ms", "p50"), "B3 at half of B2: start p50 ms", False),
    ("b3h", ("enqueue_to_start_ms", "p99"), "B3 at half of B2: start p99 ms", False),
    ("b3h", ("cores_busy",), "B3 at half of B2: cores busy", False),
    ("b4", ("efficiency",), "B4 CPU efficiency", True),
    ("b4", ("pool", "runqueue_share"), "B4: pool waiting for a core", False),
]


def system_cpu_us(result: dict[str, Any]) -> float | None:
    """CPU µs per operation of the system under test: every group but the load generator
    and the rest of the machine."""
    cpu = result.get("cpu") or {}
    total = sum(v.get("cpu_s", 0.0) for k, v in cpu.items() if k not in ("generator",
                                                                          "others"))
    ops = result.get("ops") or result.get("ok")
    return round(total / ops * 1e6, 1) if ops and total else None


def dig(data: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = data
    for key in path:
        if not isinstance(value, dict):
            return None
        if key == "cpu_us_per_op":
            return system_cpu_us(value)
        if key == "cores_busy":
            return busy_cores(value)
        value = value.get(key)
    return value if isinstance(value, (int, float)) else None


MIN_RATE_PER_S = 100.0
"""The slowest drain a run waits for (per workload) before it reports a timeout."""


def deadline_s(ops: int) -> float:
    """Seconds one workload may take: 300, or more for a B1 of ``ops`` operations drained
    at ``MIN_RATE_PER_S`` (Celery drains 100,000 operations at ~330-590/s on 2 cores, so a
    fixed 300 s cut its B1 short on a slow day)."""
    return max(300.0, ops / MIN_RATE_PER_S)


def run_conveyor(args: argparse.Namespace, system: str, out: Path, ceilings: bool) -> int:
    tier = TIERS[system]
    # B2 on every tier (its target holds for each); B2b, whose ingest leaves a backlog the
    # workers drain before B3, only on the embedded one.
    # B3 at the peers' fixed rate, then B3H at half of this run's B2 (the targets' rate).
    workloads = "b1,b2,b2b,b3,b3h,b4" if tier == "embedded" else "b1,b2,b3,b3h,b4"
    cmd = [sys.executable, "-m", "conveyor.bench.cli", "--tier", tier,
           "--workloads", workloads, "--ops", str(args.ops),
           "--rate", str(args.rate), "--rate-duration", str(args.rate_duration),
           "--cpu-ops", str(args.cpu_ops), "--processes", str(args.processes),
           "--duration", str(args.duration), "--connections", args.connections,
           "--batch-ops", str(args.batch_ops),
           "--deadline", str(args.deadline), "--out", str(out), "--quiet"]
    if ceilings:  # the log's own ceiling on the Kafka tier, every other on the embedded
        cmd += ["--ceilings", "kafka" if tier == "kafka" else "all"]
    if tier == "embedded":
        return subprocess.run(cmd, cwd=REPO, timeout=args.deadline * 8).returncode
    # A fresh database (and, for Kafka, fresh topics) per run: no run drains another's rows.
    name = f"conveyor_bench_{tier}_{out.stem.replace('-', '_')}"
    store = fresh_database(name)
    cmd += ["--store", store]
    env = dict(os.environ)
    if tier == "kafka":
        cmd += ["--kafka-bootstrap", args.kafka]
        env["CONVEYOR_KAFKA_TOPIC_PREFIX"] = f"bench.{out.stem}."
    try:
        return subprocess.run(cmd, cwd=REPO, env=env, timeout=args.deadline * 8).returncode
    finally:
        subprocess.run([str(REPO / "scripts" / "postgres.sh"), "dropdb", name], cwd=REPO,
                       capture_output=True, timeout=120)


def merged_ceilings(parts: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The stage ceilings of the first repetitions (the embedded tier's, then the Kafka
    tier's log) as one table: their rows, then their comparisons."""
    found = [p for p in parts if p]
    if not found:
        return None
    return {"rows": [r for p in found for r in p.get("rows", [])],
            "comparisons": [c for p in found for c in p.get("comparisons", [])],
            "raw": {k: v for p in found for k, v in p.get("raw", {}).items()}}


def fresh_database(name: str) -> str:
    """Create database ``name`` on the local PostgreSQL of ``scripts/postgres.sh``."""
    subprocess.run([str(REPO / "scripts" / "postgres.sh"), "dropdb", name], cwd=REPO,
                   capture_output=True, timeout=120)
    done = subprocess.run([str(REPO / "scripts" / "postgres.sh"), "createdb", name],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    return done.stdout.strip().splitlines()[-1]


def run_peer(args: argparse.Namespace, system: str, out: Path) -> int:
    env = {**os.environ, "PEER_REDIS_URL": args.redis or ""}
    cmd = [str(args.peers_python), "-m", "benchmarks.peers.harness", "--system", system,
           "--workloads", "b1,b3,b4", "--ops", str(args.ops), "--rate", str(args.rate),
           "--rate-duration", str(args.rate_duration), "--cpu-ops", str(args.cpu_ops),
           "--processes", str(args.processes), "--deadline", str(args.deadline),
           "--out", str(out)]
    if args.redis:
        cmd += ["--redis", args.redis]
    if args.postgres:
        cmd += ["--postgres", args.postgres]
    return subprocess.run(cmd, cwd=REPO, env=env, timeout=args.deadline * 4).returncode


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    for system, reports in runs.items():
        metrics: dict[str, Any] = {}
        for workload, path, label, better_high in METRICS:
            values = [v for r in reports
                      if (v := dig(r.get("results", {}).get(workload, {}), path)) is not None]
            if values:
                metrics[label] = {"median": round(statistics.median(values), 3),
                                  "values": values, "higher_is_better": better_high}
        first = reports[0] if reports else {}
        systems[system] = {
            "durability": first.get("target", {}).get("durability")
            or first.get("durability"),
            "version": first.get("conveyor_version") or first.get("version"),
            "settings": first.get("settings") or first.get("target"),
            "repetitions": len(reports), "metrics": metrics,
        }
    ratios: dict[str, dict[str, float]] = {}
    base = systems.get("conveyor", {}).get("metrics", {})
    for system, data in systems.items():
        if system in TIERS:
            continue
        for label, m in data["metrics"].items():
            if label in base and m["median"]:
                ratios.setdefault(system, {})[label] = round(base[label]["median"]
                                                             / m["median"], 3)
    return {"systems": systems, "ratios": ratios, "tiers_vs_peers": tiers_vs_peers(systems)}


def tiers_vs_peers(systems: dict[str, Any]) -> list[dict[str, Any]]:
    """Each Conveyor tier's B1 drain rate against Celery and against the fastest peer of
    the same run (the targets' "10x Celery" and "2x the fastest peer")."""
    label = "B1 drain ops/s"
    peers = {n: d["metrics"][label]["median"] for n, d in systems.items()
             if n not in TIERS and label in d["metrics"]}
    fastest = max(peers.items(), key=lambda kv: kv[1], default=None)
    rows = []
    for name in TIERS:
        mine = systems.get(name, {}).get("metrics", {}).get(label)
        if mine is None:
            continue
        row: dict[str, Any] = {"tier": name, "ops_per_s": mine["median"]}
        if peers.get("celery"):
            row["vs_celery"] = round(mine["median"] / peers["celery"], 2)
        if fastest:
            row["fastest_peer"] = fastest[0]
            row["vs_fastest_peer"] = round(mine["median"] / fastest[1], 2)
        rows.append(row)
    return rows


def print_summary(summary: dict[str, Any]) -> None:
    systems = summary["systems"]
    table = Table(title="medians (Conveyor/peer ratio in brackets; ↑ higher is better, "
                        "↓ lower is better)")
    table.add_column("metric")
    for name in systems:
        table.add_column(name, justify="right")
    labels = [label for _, _, label, _ in METRICS]
    for label in labels:
        row = [label + (" ↑" if next(m[3] for m in METRICS if m[2] == label) else " ↓")]
        present = False
        for name, data in systems.items():
            m = data["metrics"].get(label)
            if m is None:
                row.append("-")
                continue
            present = True
            ratio = summary["ratios"].get(name, {}).get(label)
            row.append(f"{m['median']:,.3g}" + (f" [{ratio:.2f}]" if ratio else ""))
        if present:
            table.add_row(*row)
    console.print(table)
    for name, data in systems.items():
        console.print(f"[bold]{name}[/] {data.get('version') or ''}: {data['durability']}",
                      highlight=False)
    for row in summary.get("tiers_vs_peers", []):
        console.print(f"{row['tier']}: B1 {row['ops_per_s']:,.0f} ops/s, "
                      f"{row.get('vs_celery', '-')}x Celery, {row.get('vs_fastest_peer', '-')}x "
                      f"the fastest peer ({row.get('fastest_peer', '-')})", highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=None,
                        help="comma-separated (default: every Conveyor tier whose services "
                             "are given, then the peers)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--redis", default=os.environ.get("PEER_REDIS_URL"))
    parser.add_argument("--postgres", default=os.environ.get("PEER_POSTGRES_URL"))
    parser.add_argument("--kafka", default=os.environ.get("CONVEYOR_KAFKA_BOOTSTRAP"),
                        help="Kafka bootstrap for the conveyor-kafka tier")
    parser.add_argument("--peers-python", type=Path, default=DEFAULT_VENV / "bin" / "python")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ops", type=int, default=20_000, help="B1 operations")
    parser.add_argument("--rate", type=float, default=200.0, help="B3 arrivals/s")
    parser.add_argument("--rate-duration", type=float, default=10.0)
    parser.add_argument("--cpu-ops", type=int, default=1000, help="B4 operations")
    parser.add_argument("--duration", type=float, default=10.0, help="B2 seconds")
    parser.add_argument("--connections", default="64,128,256",
                        help="B2 submitters: B2 keeps the fastest count with p95 under "
                             "150 ms")
    parser.add_argument("--batch-ops", type=int, default=100_000, help="B2b operations")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds one workload may take "
                             "(default: 300, or --ops / 100 if longer)")
    parser.add_argument("--no-ceilings", action="store_true")
    parser.add_argument("--out-dir", type=Path,
                        default=REPO / "benchmarks" / "results" / time.strftime("%Y%m%d-%H%M%S"))
    args = parser.parse_args()
    if args.deadline is None:
        args.deadline = deadline_s(args.ops)
    if args.systems is None:
        tiers = ["conveyor"] + (["conveyor-postgres"] if args.postgres else []) + \
            (["conveyor-kafka"] if args.postgres and args.kafka else [])
        args.systems = ",".join([*tiers, *PEERS])
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    for rep in range(1, args.reps + 1):
        for system in systems:
            out = args.out_dir / f"rep{rep}-{system}.json"
            console.print(f"[dim]repetition {rep}/{args.reps}: {system}[/]")
            started = time.monotonic()
            try:
                if system in TIERS:
                    code = run_conveyor(args, system, out, ceilings=system in (
                        "conveyor", "conveyor-kafka") and rep == 1 and not args.no_ceilings)
                else:
                    code = run_peer(args, system, out)
            except subprocess.TimeoutExpired:
                code = -1
            if out.exists():
                runs[system].append(json.loads(out.read_text()))
            if code != 0:
                console.print(f"[yellow]{system} exited with {code}; see {out}[/]")
            console.print(f"[dim]  {time.monotonic() - started:.0f} s[/]")
    summary = summarize(runs)
    summary["machine"] = next((r["machine"] for r in runs.get("conveyor", [])), None)
    summary["command"] = " ".join(["python -m benchmarks.compare", *sys.argv[1:]])
    summary["runs"] = {s: [str(args.out_dir / f"rep{i + 1}-{s}.json")
                           for i in range(len(v))] for s, v in runs.items()}
    summary["ceilings"] = merged_ceilings(
        [runs[s][0].get("ceilings") for s in ("conveyor", "conveyor-kafka") if runs.get(s)])
    conveyor_runs = runs.get("conveyor", [])
    if conveyor_runs:
        summary["conveyor_target"] = conveyor_runs[0].get("target")
    (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    console.print(f"wrote {args.out_dir / 'summary.json'}", highlight=False)


if __name__ == "__main__":
    main()
