"""A PostgreSQL-tier fleet for acceptance tests: ``conveyor api`` and ``conveyor worker``
processes on one fresh database, and direct SQL reads of the outcome."""

from __future__ import annotations

import subprocess
import sys
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
