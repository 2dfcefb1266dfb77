"""Fleets for acceptance tests: ``conveyor api``, ``worker`` and ``relay`` processes on
one fresh database (PostgreSQL or Kafka tier), killing a busy worker, submitting keyed
work, and checking the outcome with direct SQL reads."""

from __future__ import annotations

import collections
import itertools
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from .processes import ConveyorProcess, free_port, wait_until


def migrate(url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conveyor.cli", "migrate", "--store", url],
                          capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


def start_api(url: str, tmp: Path, name: str, env: dict[str, str]) -> ConveyorProcess:
    port = free_port()
    proc = ConveyorProcess(["api", "--store", url, "--port", str(port), "--tasks",
                            "conveyor_test_tasks"], tmp / f"{name}.log", env=env, port=port)
    proc.start().wait_ready()
    return proc


def start_worker(url: str, tmp: Path, name: str, env: dict[str, str],
                 concurrency: int = 64) -> ConveyorProcess:
    proc = ConveyorProcess(["worker", "--store", url, "--tasks", "conveyor_test_tasks",
                            "--concurrency", str(concurrency)], tmp / f"{name}.log", env=env)
    return proc.start()


def wait_workers(api: ConveyorProcess, pids: set[int], timeout_s: float = 30.0) -> list[Any]:
    """The registered workers once every pid in ``pids`` has registered."""
    def registered() -> list[Any] | None:
        workers = httpx.get(f"{api.url}/v1/workers", timeout=5).json()["workers"]
        return workers if pids <= {w["pid"] for w in workers} else None

    return wait_until(registered, timeout_s)  # type: ignore[no-any-return]


def query(url: str, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
        cur = conn.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description is not None else []


def kafka_env(bootstrap: str, prefix: str, partitions: int = 12) -> dict[str, str]:
    """Environment that puts ``conveyor api|worker|relay`` on the Kafka tier."""
    return {"CONVEYOR_TRANSPORT": "kafka", "CONVEYOR_KAFKA_BOOTSTRAP": bootstrap,
            "CONVEYOR_KAFKA_TOPIC_PREFIX": prefix,
            "CONVEYOR_KAFKA_PARTITIONS": str(partitions),
            "CONVEYOR_KAFKA_SESSION_TIMEOUT_S": "6"}


def start_relay(url: str, tmp: Path, name: str, env: dict[str, str]) -> ConveyorProcess:
    """``conveyor relay`` (Kafka settings come from ``env``, see :func:`kafka_env`)."""
    proc = ConveyorProcess(["relay", "--store", url], tmp / f"{name}.log", env=env)
    return proc.start()


@dataclass
class KilledWorker:
    """A worker ``kill -9``-ed while it held leases, and which operations it held."""

    worker_id: str
    held: set[str]
    killed_at_s: float
    """``time.monotonic()`` right after the kill."""

    def wait_rescued(self, url: str, timeout_s: float) -> float:
        """Wait until none of its operations is still running under its id; returns the
        seconds since the kill."""
        wait_until(lambda: not query(url, "SELECT 1 FROM operations WHERE status = "
                                     "'running' AND worker_id = %s LIMIT 1",
                                     (self.worker_id,)), timeout_s, 0.05)
        return time.monotonic() - self.killed_at_s


def kill_busy_worker(url: str, api: ConveyorProcess, victim: ConveyorProcess, *,
                     min_running: int, min_succeeded: int,
                     timeout_s: float) -> KilledWorker:
    """``kill -9`` ``victim`` while it runs at least ``min_running`` operations, once the
    fleet has finished more than ``min_succeeded``; returns what it held then.

    A busy worker's running count drops to 0 between batches, so it is checked with the
    worker frozen (:meth:`ConveyorProcess.kill9_when`)."""
    assert victim.proc is not None
    pid = victim.proc.pid
    victim_id = next(w["id"] for w in wait_workers(api, {pid}) if w["pid"] == pid)

    def running() -> int:
        return int(query(url, "SELECT count(*) AS n FROM operations WHERE status = "
                         "'running' AND worker_id = %s", (victim_id,))[0]["n"])

    wait_until(lambda: query(url, "SELECT count(*) AS n FROM operations WHERE status = "
                             "'succeeded'")[0]["n"] > min_succeeded, timeout_s, 0.05)
    victim.kill9_when(lambda: running() >= min_running, timeout_s)
    killed_at_s = time.monotonic()
    held = {str(r["id"]) for r in query(url, "SELECT id FROM operations WHERE status = "
                                        "'running' AND worker_id = %s", (victim_id,))}
    return KilledWorker(victim_id, held, killed_at_s)


def submit_keyed(api: ConveyorProcess, keys: list[int], per_key: int, batch: int,
                 sleep_s: float, acknowledged: list[str], errors: list[str],
                 keyed: bool = True) -> None:
    """Submit ``per_key`` ``test.record`` operations for each key in batches, one after the
    other (for every key, submission order is the order of ``n``); job ids go to
    ``acknowledged``, a refused batch to ``errors`` (and stops). Without ``keyed``, the
    same operations carry no key (nothing orders them)."""
    bodies = [{"task": "test.record", "args": {"n": n, "sleep_s": sleep_s}}
              | ({"key": f"k{k}"} if keyed else {})
              for n in range(per_key) for k in keys]
    with httpx.Client(base_url=api.url, timeout=120) as client:
        for i in range(0, len(bodies), batch):
            answer = client.post("/v1/jobs/batch", json={"jobs": bodies[i:i + batch]})
            if answer.status_code != 202:
                errors.append(f"{answer.status_code} {answer.text[:300]}")
                return
            acknowledged.extend(answer.json()["ids"])


OPS_SQL = ("SELECT o.id, o.job_id, o.key, o.args, o.status, o.attempts, o.result, "
           "o.started_at, o.finished_at, o.seq, j.status AS job_status "
           "FROM operations o JOIN jobs j ON j.id = o.job_id ORDER BY o.seq")
"""Every operation with its job's status, in submission order (for :func:`check_outcomes`)."""


def check_outcomes(ops: list[dict[str, Any]], acknowledged: list[str], record_log: Path,
                   per_key: int) -> collections.Counter[str]:
    """Every acknowledged job (and nothing else) succeeded, results match, an operation
    ran at most once per attempt, and per-key order held (operations without a key have
    none to hold); returns how often each operation ran."""
    assert sorted(str(r["job_id"]) for r in ops) == sorted(acknowledged)
    assert all(r["status"] == "succeeded" and r["job_status"] == "succeeded" for r in ops)
    assert all(r["result"] == r["args"]["n"] for r in ops)
    executions = collections.Counter(line.split()[0] for line in
                                     record_log.read_text().splitlines() if line)
    assert set(executions) == {r["id"] for r in ops}
    assert all(executions[str(r["id"])] <= int(r["attempts"]) for r in ops)
    by_key: dict[object, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in ops:
        if r["key"] is not None:
            by_key[r["key"]].append(r)
    for key, rows in by_key.items():
        assert [r["args"]["n"] for r in rows] == list(range(per_key)), key
        for earlier, later in itertools.pairwise(rows):
            assert earlier["finished_at"] <= later["started_at"], (key, earlier["id"])
    return executions


def wait_finished(url: str, ops: int, timeout_s: float,
                  procs: Iterable[ConveyorProcess] = ()) -> None:
    """Wait until ``ops`` operations are terminal (succeeded, dead or cancelled); on time-out
    fail with what was left behind and the tail of each process's log."""
    def finished() -> bool:
        [row] = query(url, "SELECT count(*) FILTER (WHERE status IN ('succeeded', 'dead', "
                      "'cancelled')) AS done FROM operations")
        return int(row["done"]) >= ops

    try:
        wait_until(finished, timeout_s, 0.2)
    except TimeoutError:
        raise AssertionError(describe_stall(url, procs)) from None


def describe_stall(url: str, procs: Iterable[ConveyorProcess]) -> str:
    """What a run that did not finish left: operations by status, the unfinished ones,
    the outbox, and the last lines each process logged."""
    lines = ["the run did not finish"]
    for row in query(url, "SELECT status, count(*) AS n FROM operations GROUP BY status"):
        lines.append(f"  operations {row['status']}: {row['n']}")
    for row in query(url, "SELECT id, key, status, attempts, run_at, worker_id, lease_expires_at "
                     "FROM operations WHERE status NOT IN ('succeeded', 'dead', 'cancelled') "
                     "ORDER BY seq LIMIT 10"):
        lines.append(f"  unfinished {dict(row)}")
    [outbox] = query(url, "SELECT count(*) AS n, count(*) FILTER (WHERE claimed_until IS "
                     "NOT NULL) AS claimed, min(due_at) AS oldest_due FROM outbox")
    lines.append(f"  outbox {dict(outbox)}")
    for p in procs:
        tail = p.log_path.read_text(errors="replace").splitlines()[-25:]
        lines.append(f"--- {p.log_path.name} (last {len(tail)} lines)")
        lines.extend(tail)
    return "\n".join(lines)


def stop_all(procs: Iterable[ConveyorProcess]) -> None:
    """SIGTERM every process still running (SIGKILL after its timeout)."""
    for p in procs:
        if p.proc is not None and p.proc.poll() is None:
            p.stop()


@dataclass
class KafkaFleet:
    """``conveyor api``, ``conveyor relay`` and workers of the Kafka tier on one fresh
    database and topic prefix; ``env`` is what they were started with."""

    url: str
    env: dict[str, str]
    record_log: Path
    api: ConveyorProcess
    procs: dict[str, ConveyorProcess] = field(default_factory=dict)

    @property
    def workers(self) -> list[ConveyorProcess]:
        return [p for name, p in self.procs.items() if name.startswith("worker")]


def start_kafka_fleet(url: str, tmp: Path, bootstrap: str, prefix: str, *, partitions: int,
                      workers: int, lease_s: float, procs: dict[str, ConveyorProcess],
                      relay_env: dict[str, str] | None = None) -> KafkaFleet:
    """Migrate ``url`` and start the fleet, every worker registered. Reconciliation is off:
    nothing may be recovered by re-dispatching lost messages. The processes go into
    ``procs`` as they start (``api``, ``relay``, ``worker-N``), so the caller's cleanup
    stops them even if a later one fails to start."""
    record_log = tmp / "executions.log"
    env = {"RECORD_LOG": str(record_log), "CONVEYOR_LEASE_S": str(lease_s),
           "CONVEYOR_RESCUE_INTERVAL_S": "0.5", "CONVEYOR_RECONCILE_AFTER_S": "0",
           "CONVEYOR_RELAY_IN_PROCESS": "0",  # the relay is a process of its own here
           **kafka_env(bootstrap, prefix, partitions)}
    done = migrate(url, tmp)
    assert done.returncode == 0, done.stderr
    procs["api"] = start_api(url, tmp, "api", env)
    procs["relay"] = start_relay(url, tmp, "relay", {**env, **(relay_env or {})})
    for i in range(workers):
        procs[f"worker-{i}"] = start_worker(url, tmp, f"worker-{i}", env)
    fleet = KafkaFleet(url, env, record_log, procs["api"], procs)
    wait_workers(fleet.api, {w.proc.pid for w in fleet.workers if w.proc})
    return fleet
