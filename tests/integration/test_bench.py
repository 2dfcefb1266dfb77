"""``conveyor bench`` end to end: it starts an embedded server (``conveyor api``, then
``conveyor serve`` on the same SQLite file), runs a small B1 drain, a short B2 closed
loop and a B3 open loop at half of that B2's rate over real loopback HTTP, and writes a
JSON report whose figures must be sane."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

N_OPS = 2000
N_REQUESTS = 300


@pytest.mark.timeout(120)
def test_bench_b1_b2_and_b3_on_embedded(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable, "-m", "conveyor.cli", "bench",
        "--tier", "embedded", "--workloads", "b1,b2,b3",
        "--ops", str(N_OPS), "--requests", str(N_REQUESTS), "--warmup", "0",
        "--rate", "half-b2", "--rate-duration", "0.5",
        "--connections", "16", "--processes", "1", "--deadline", "50",
        "--workdir", str(tmp_path / "work"), "--out", str(out), "--quiet",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=110, cwd=tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    report = json.loads(out.read_text())

    assert report["machine"]["nproc"] >= 1 and report["machine"]["cpu_model"]
    assert report["target"]["tier"] == "embedded"
    assert "synchronous=FULL" in report["target"]["durability"]

    b1 = report["results"]["b1"]
    assert "error" not in b1, b1
    assert b1["ops"] == N_OPS
    assert b1["outcomes"] == {"succeeded": N_OPS}
    assert b1["mode"] == "paused"
    assert b1["ops_per_s"] > 0 and b1["duration_s"] > 0
    assert b1["load"]["ops_per_s"] > 0
    assert b1["wall_s"] >= b1["duration_s"] * 0.5
    assert b1["cpu"]["server"]["cpu_s"] > 0 and b1["cpu"]["server"]["us_per_op"] > 0
    assert "generator" in b1["cpu"]

    b2 = report["results"]["b2"]
    assert "error" not in b2, b2
    assert b2["requests"] == N_REQUESTS
    assert b2["ok"] == N_REQUESTS and b2["statuses"] == {"202": N_REQUESTS}
    assert b2["throughput_per_s"] > 0
    lat = b2["latency_ms"]
    assert lat["count"] == N_REQUESTS
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert b2["cpu"]["server"]["us_per_op"] > 0
    # B2 ran on the tier's second database: its warm-up jobs all finished before the
    # first measured request was sent, so none of the start-up is in B2's window.
    assert b2["warmup_jobs"] == 20
    with contextlib.closing(sqlite3.connect(tmp_path / "work" / "bench-2.db")) as db:
        ops = db.execute("SELECT status, created_at, finished_at FROM operations"
                         " ORDER BY created_at").fetchall()
    assert len(ops) == 20 + N_REQUESTS
    assert {status for status, _, _ in ops} == {"succeeded"}
    assert max(finished for _, _, finished in ops[:20]) <= ops[20][1]

    b3 = report["results"]["b3"]
    assert "error" not in b3, b3
    assert b3["rate_per_s"] == max(1.0, round(b2["throughput_per_s"] / 2, 1))
    assert b3["requests"] == b3["ok"] == int(b3["rate_per_s"] * 0.5)


@pytest.mark.timeout(120)
def test_bench_b2_sweeps_connection_counts_and_b3_halves_the_best(tmp_path: Path) -> None:
    """``--connections 4,16``: B2 runs at each count, lists both points, keeps the one
    with the highest throughput under the p95 bound, and B3 runs at half of it."""
    out = tmp_path / "bench.json"
    done = subprocess.run([
        sys.executable, "-m", "conveyor.cli", "bench", "--workloads", "b2,b3",
        "--requests", "200", "--warmup", "0", "--connections", "4,16,4",
        "--rate", "half-b2", "--rate-duration", "0.5", "--processes", "1",
        "--deadline", "50", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=110, cwd=tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    results = json.loads(out.read_text())["results"]
    b2, b3 = results["b2"], results["b3"]
    assert [p["connections"] for p in b2["sweep"]] == [4, 16]  # each count once
    assert all(p["throughput_per_s"] > 0 and p["cpu"] for p in b2["sweep"])
    best = max((p for p in b2["sweep"] if p["p95_ms"] < b2["p95_bound_ms"]),
               key=lambda p: p["throughput_per_s"])
    assert (b2["connections"], b2["throughput_per_s"]) == (
        best["connections"], best["throughput_per_s"])
    assert b2["ok"] == 200 and b2["latency_ms"]["p95"] == best["p95_ms"]
    assert b3["rate_per_s"] == max(1.0, round(b2["throughput_per_s"] / 2, 1))


@pytest.mark.timeout(120)
def test_bench_b3h_runs_at_half_of_b2_beside_a_fixed_rate_b3(tmp_path: Path) -> None:
    """B3 keeps its fixed ``--rate`` (the rate the peers are compared at) while B3H, in the
    same bench, runs at half of the B2 before it (the rate the targets name)."""
    out = tmp_path / "bench.json"
    done = subprocess.run([
        sys.executable, "-m", "conveyor.cli", "bench", "--workloads", "b2,b3,b3h",
        "--requests", "200", "--warmup", "0", "--connections", "8", "--rate", "20",
        "--rate-duration", "0.5", "--processes", "1", "--deadline", "50",
        "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=110, cwd=tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    results = json.loads(out.read_text())["results"]
    b2, b3, b3h = results["b2"], results["b3"], results["b3h"]
    assert b3["rate_per_s"] == 20 and b3["ok"] == 10
    assert (b3h["workload"], b3h["title"]) == ("b3h", "B3 at half of B2")
    assert b3h["rate_per_s"] == max(1.0, round(b2["throughput_per_s"] / 2, 1))
    assert b3h["ok"] == int(b3h["rate_per_s"] * 0.5)
    start = b3h["enqueue_to_start_ms"]
    assert start["count"] == b3h["sampled_ops"] > 0 and 0 < start["p50"] <= start["p99"]


@pytest.mark.parametrize(("args", "message"), [
    (["-w", "b3h"], "b3h runs at half of B2's throughput: it needs b2 before it"),
    (["-w", "b3h,b2"], "b3h runs at half of B2's throughput: it needs b2 before it"),
    (["-w", "b3", "--rate", "half-b2"], "needs b2 before b3"),
    (["-w", "b3,b2", "--rate", "half-b2"], "needs b2 before b3"),
    (["-w", "b3", "--rate", "fast"], "not 'fast'"),
    (["-w", "b3", "--rate", "0.5"], "at least 1 arrival"),
    (["--tier", "kafka", "--store", "postgresql://127.0.0.1:1/x", "--kafka-bootstrap",
      "127.0.0.1:1", "--relay", "both"], "--relay 'both': one of api, separate"),
    (["--relay", "separate"], "--relay applies to the kafka tier only, not to the "
                              "embedded tier"),
    (["--tier", "postgres", "--store", "postgresql://127.0.0.1:1/x", "--relay", "api"],
     "--relay applies to the kafka tier only, not to the postgres tier"),
    (["--connections", "64,0"], "--connections: whole numbers of at least 1"),
    (["--connections", "many"], "--connections: whole numbers of at least 1"),
    (["--url", "http://127.0.0.1:1", "--workers", "2"],
     "--workers applies to the postgres and kafka tiers only, not to a running server"),
    (["-w", "none"], "nothing to run: name a workload (-w) or a ceiling (--ceilings)"),
    (["-w", "b1", "--ceilings", "kafka"], "the kafka ceiling needs --kafka-bootstrap"),
])
def test_bench_rejects_a_rate_it_cannot_follow(tmp_path: Path, args: list[str],
                                               message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "conveyor.cli", "bench", *args],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "COLUMNS": "200"})  # one line per message
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.timeout(120)
def test_bench_b5_samples_the_worker_rss(tmp_path: Path) -> None:
    """B5 streams operations through a running worker with a bounded backlog and reports
    the worker's RSS against the operations finished; ``all`` leaves it out."""
    out = tmp_path / "bench.json"
    n_ops = 6000
    cmd = [
        sys.executable, "-m", "conveyor.cli", "bench",
        "--tier", "embedded", "--workloads", "b5", "--mem-ops", str(n_ops),
        "--mem-backlog", "2000", "--batch-size", "500", "--processes", "1",
        "--deadline", "80", "--workdir", str(tmp_path / "work"), "--out", str(out), "--quiet",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=110, cwd=tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    b5 = json.loads(out.read_text())["results"]["b5"]
    assert "error" not in b5, b5
    assert b5["ops"] >= n_ops
    assert b5["outcomes"] == {"succeeded": b5["ops"]}
    assert b5["samples"] and all(rss > 10 for _, rss in b5["samples"])
    done_counts = [n for n, _ in b5["samples"]]
    assert done_counts == sorted(done_counts) and done_counts[-1] >= n_ops
    rss = b5["worker_rss"]
    assert rss["warmup_ops"] == n_ops // 10
    if rss["samples_after_warmup"] >= 2:
        assert 0 < rss["warm_mib"] <= rss["max_mib"]
        assert b5["flat"] == (rss["growth_pct"] <= b5["flat_pct"])


@pytest.mark.timeout(120)
def test_bench_reads_b2b_against_the_parse_and_store_ceilings(tmp_path: Path) -> None:
    """``--ceilings parse,store``: the API's batch parse and the store's inserts are
    measured on their own, and B2b is read against each and against the two in series."""
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "conveyor.cli", "bench", "--tier", "embedded",
           "--workloads", "b2b", "--batch-ops", "4000", "--ceilings", "parse,store",
           "--processes", "1", "--deadline", "80", "--workdir", str(tmp_path / "work"),
           "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=110, cwd=tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    report = json.loads(out.read_text())
    b2b = report["results"]["b2b"]
    assert b2b["ops"] == 4000 and b2b["ops_per_s"] > 0
    # The ingest began once the warm-up jobs had run on the workers it runs beside.
    with contextlib.closing(sqlite3.connect(tmp_path / "work" / "bench-1.db")) as db:
        ops = db.execute("SELECT status, created_at, finished_at FROM operations"
                         " ORDER BY created_at").fetchall()
    assert b2b["warmup_jobs"] == 20 and len(ops) == 20 + 4000
    assert max(finished for _, _, finished in ops[:20]) <= ops[20][1]
    parse = report["ceilings"]["raw"]["parse"]
    assert parse["batch"] == 1000 and parse["ops_per_s"] > 0 and parse["cpu_us_per_op"] > 0
    insert = report["ceilings"]["raw"]["store"]["insert"]["1000"]["ops_per_s"]
    ratios = {c["stage"]: c["ratio"] for c in report["ceilings"]["comparisons"]
              if c["workload"] == "B2b"}
    assert ratios["API batch parse"] == round(b2b["ops_per_s"] / parse["ops_per_s"], 3)
    series = 1 / (1 / parse["ops_per_s"] + 1 / insert)
    assert ratios["parse, then insert"] == round(b2b["ops_per_s"] / series, 3)


@pytest.mark.timeout(120)
def test_bench_runs_only_the_ceilings_with_no_workload(tmp_path: Path) -> None:
    """``-w none``: the ceilings alone; no tier is started and no workload reported."""
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "conveyor.cli", "bench", "-w", "none",
                           "--ceilings", "parse", "--workdir", str(tmp_path / "work"),
                           "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=110, cwd=tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    report = json.loads(out.read_text())
    assert report["results"] == {}
    assert report["ceilings"]["raw"]["parse"]["ops_per_s"] > 0
    assert not any((tmp_path / "work").glob("*.log")), "no server was started"


def test_bench_all_leaves_out_b5() -> None:
    from conveyor.bench.cli import SELECTABLE, _parse_list
    from conveyor.bench.workloads import WORKLOADS

    assert _parse_list("all", SELECTABLE, "workload", everything=WORKLOADS) == list(WORKLOADS)
    assert "b5" not in WORKLOADS
    assert _parse_list("b1,b5", SELECTABLE, "workload") == ["b1", "b5"]


@pytest.mark.timeout(120)
def test_bench_b3_measures_after_a_warm_up(tmp_path: Path) -> None:
    """B3's arrivals start only once warm-up jobs went through the whole path, so worker
    start-up is not reported as enqueue-to-start latency; the warm-up is not counted."""
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "conveyor.cli", "bench", "--tier", "embedded",
           "--workloads", "b3", "--rate", "100", "--rate-duration", "1", "--processes", "1",
           "--deadline", "50", "--workdir", str(tmp_path / "work"), "--out", str(out),
           "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=110, cwd=tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    b3 = json.loads(out.read_text())["results"]["b3"]
    assert "error" not in b3, b3
    assert b3["warmup_jobs"] == 20
    assert b3["requests"] == 100 and b3["ok"] == 100
    assert 0 < b3["sampled_ops"] <= 100
    start = b3["enqueue_to_start_ms"]
    assert start["count"] == b3["sampled_ops"]
    assert 0 <= start["p50"] <= start["p99"] <= start["max"]
    assert "enqueue_to_start_parts_ms" not in b3, "no log to split the wait at"


def _processes_mentioning(text: str) -> list[int]:
    """Pids of processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue  # ended meanwhile
    return found


@pytest.mark.timeout(120)
def test_sigterm_stops_the_bench_and_the_servers_it_started(tmp_path: Path) -> None:
    """A benchmark ended by SIGTERM (a CI job's timeout, ``timeout(1)``) stops the servers
    it started instead of leaving them running on the machine."""
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "conveyor.cli", "bench", "--tier", "embedded",
           "--workloads", "b2", "--duration", "60", "--processes", "1",
           "--workdir", str(work), "--quiet"]
    bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not _processes_mentioning(str(work)) or not list(work.glob("*-serve.log")):
            assert bench.poll() is None, bench.communicate()
            assert time.monotonic() < deadline, "the bench never started its server"
            time.sleep(0.2)
        bench.send_signal(signal.SIGTERM)
        _, stderr = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
    left = _processes_mentioning(str(work))
    for pid in left:  # not to leave them running when this fails
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert bench.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr
    assert left == [], "servers still running after the bench ended"
