"""What the benchmark measures: a running server (``--url``) or a tier it starts itself.

A target can be started with or without workers. Drain workloads (B1, B4) load their
operations while no worker runs, then start the workers and time the drain: the embedded
tier loads through ``conveyor api`` on the SQLite file and then replaces it with
``conveyor serve`` on the same file (the embedded tier as users run it); the postgres and
kafka tiers keep their API process and start ``conveyor worker`` (``workers`` of them).

Every process is started in its own session with its output in a log file of the work
directory, and stopped with SIGTERM (SIGKILL of its own process group after a grace
period). ``profile_dir`` wraps each one in ``py-spy record`` to sample where it spends its
time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..config import load_config
from ..transport.kafka.messages import topic_name
from ..wiring import make_kafka_client
from .procstat import Listener

RootsFn = Callable[[], list[int]]


class TierError(Exception):
    """A server could not be started or did not become ready."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_py_spy() -> str | None:
    """py-spy on PATH or in the benchmark virtual environment (benchmarks/run_all.sh)."""
    found = shutil.which("py-spy")
    if found:
        return found
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    candidate = cache / "conveyor-bench" / "venv" / "bin" / "py-spy"
    return str(candidate) if candidate.exists() else None


class Proc:
    """One subprocess with its log; optionally under ``py-spy record``."""

    def __init__(self, label: str, cmd: list[str], workdir: Path, env: dict[str, str],
                 profile_dir: Path | None = None) -> None:
        self.label = label
        self.log_path = workdir / f"{label}.log"
        self.profile_path: Path | None = None
        if profile_dir is not None:
            py_spy = find_py_spy()
            if py_spy is None:
                raise TierError("--profile needs py-spy: pip install py-spy, or run "
                                "benchmarks/run_all.sh --setup-only")
            profile_dir.mkdir(parents=True, exist_ok=True)
            self.profile_path = profile_dir / f"{label}.txt"
            cmd = [py_spy, "record", "--subprocesses", "--function", "--threads", "--rate", "200",
                   "--format", "raw", "--output", str(self.profile_path), "--", *cmd]
        self.cmd = cmd
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                          cwd=workdir, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def main_pid(self) -> int | None:
        """The Conveyor process itself (under py-spy it is the wrapper's child)."""
        if self.popen.poll() is not None:
            return None
        if self.profile_path is None:
            return self.popen.pid
        try:
            with open(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children") as f:
                kids = [int(p) for p in f.read().split()]
        except OSError:
            kids = []
        return kids[0] if kids else None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.popen.poll() is not None:
            return
        target = self.main_pid() or self.popen.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)  # our own session only
            self.popen.wait(timeout=10)


def wait_ready(url: str, procs: list[Proc], timeout_s: float = 60.0) -> None:
    """Until ``GET /health/ready`` answers 200; fail early if a process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise TierError(f"{p.label} exited (code {p.popen.returncode}):\n{p.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health/ready", timeout=2.0).status_code == 200:
                return
        time.sleep(0.05)
    tails = "\n".join(f"--- {p.label}\n{p.tail()}" for p in procs)
    raise TierError(f"{url} not ready within {timeout_s:g} s\n{tails}")


class Target:
    """Base: something with an HTTP API to benchmark."""

    name = "external"
    can_pause = False
    """True when workers can be held back while a drain workload loads its operations."""
    pool_group = "server"
    """The group whose process runs the process pool (its children are followed)."""

    def __init__(self, url: str, processes: int, concurrency: int | None = None) -> None:
        self.url = url.rstrip("/")
        self.processes = processes
        self.concurrency = concurrency

    def start(self, *, workers: bool = True) -> None:
        wait_ready(self.url, [], timeout_s=10.0)

    def start_workers(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def log_of(self, queue: str) -> tuple[dict[str, Any], str] | None:
        """Where ``queue``'s messages can be read back (Kafka client settings and topic),
        for a target that carries them over a log; ``None`` otherwise."""
        return None

    def groups(self) -> dict[str, RootsFn]:
        """Process groups to account CPU to: name -> current root pids."""
        port = urlsplit(self.url).port or 80
        return {"server": Listener(port)}

    def describe(self) -> dict[str, Any]:
        return {"tier": self.name, "url": self.url, "processes": self.processes,
                "concurrency": self.concurrency,
                "durability": "as configured on the server (unknown to the benchmark)"}

    def profiles(self) -> list[Path]:
        return []


def _one(pid: int | None) -> list[int]:
    return [pid] if pid else []


class ExternalTarget(Target):
    """A server someone else runs; CPU is charged to the process listening on its port
    (or to ``server_pid``)."""

    def __init__(self, url: str, processes: int, server_pid: int | None = None) -> None:
        super().__init__(url, processes)
        self._server_pid = server_pid

    def groups(self) -> dict[str, RootsFn]:
        if self._server_pid:
            pid = self._server_pid
            return {"server": lambda: [pid] if Path(f"/proc/{pid}").exists() else []}
        return super().groups()


class _ManagedTier(Target):
    """Shared machinery of the tiers the benchmark starts itself."""

    can_pause = True

    def __init__(self, store: str, workdir: Path, processes: int, concurrency: int,
                 env: dict[str, str] | None = None, profile_dir: Path | None = None,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(f"http://127.0.0.1:{self.port}", processes, concurrency)
        self.store = store
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **(env or {})}
        self.profile_dir = profile_dir
        self.procs: dict[str, Proc] = {}
        self._runs = 0

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "conveyor.cli", *args]

    def _spawn(self, label: str, *args: str) -> Proc:
        self._runs += 1
        proc = Proc(f"{self._runs:02d}-{label}", self._cli(*args), self.workdir, self.env,
                    self.profile_dir)
        self.procs[label] = proc
        return proc

    def _migrate(self, store: str) -> None:
        result = subprocess.run(self._cli("migrate", "--store", store), cwd=self.workdir,
                                env=self.env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise TierError(f"conveyor migrate --store {store} failed:\n"
                            f"{result.stdout}{result.stderr}")

    def _worker_flags(self) -> list[str]:
        return ["--processes", str(self.processes), "--concurrency", str(self.concurrency)]

    def stop(self) -> None:
        for proc in list(self.procs.values())[::-1]:
            proc.stop()
        self.procs.clear()

    def _pid_of(self, label: str) -> RootsFn:
        def roots() -> list[int]:
            proc = self.procs.get(label)
            return _one(proc.main_pid()) if proc is not None else []
        return roots

    def _pids_of(self, prefix: str) -> RootsFn:
        """The processes whose labels start with ``prefix`` (several workers)."""
        def roots() -> list[int]:
            return [pid for label, proc in self.procs.items() if label.startswith(prefix)
                    for pid in _one(proc.main_pid())]
        return roots

    def profiles(self) -> list[Path]:
        if self.profile_dir is None:
            return []
        return sorted(self.profile_dir.glob("*.txt"))


class EmbeddedTier(_ManagedTier):
    """``conveyor serve`` on a SQLite file (a fresh file for every start)."""

    name = "embedded"

    def __init__(self, workdir: Path, processes: int, concurrency: int,
                 sqlite_synchronous: str = "FULL", **kw: Any) -> None:
        env = {"CONVEYOR_SQLITE_SYNCHRONOUS": sqlite_synchronous, **kw.pop("env", {})}
        super().__init__("", workdir, processes, concurrency, env=env, **kw)
        self.sqlite_synchronous = sqlite_synchronous
        self._db = 0

    def start(self, *, workers: bool = True) -> None:
        self._db += 1
        self.store = f"sqlite:///{self.workdir / f'bench-{self._db}.db'}"
        self._migrate(self.store)
        if workers:
            self._serve()
        else:
            proc = self._spawn("api", "api", "--store", self.store, "--port", str(self.port))
            wait_ready(self.url, [proc])

    def _serve(self) -> None:
        proc = self._spawn("serve", "serve", "--store", self.store, "--port", str(self.port),
                           *self._worker_flags())
        wait_ready(self.url, [proc])

    def start_workers(self) -> None:
        api = self.procs.pop("api", None)
        if api is not None:
            api.stop()
        self._serve()

    def groups(self) -> dict[str, RootsFn]:
        return {"api": self._pid_of("api"), "server": self._pid_of("serve")}

    def describe(self) -> dict[str, Any]:
        return {
            "tier": self.name, "store": "sqlite (WAL)", "processes": self.processes,
            "concurrency": self.concurrency, "sqlite_synchronous": self.sqlite_synchronous,
            "durability": (
                f"SQLite WAL, synchronous={self.sqlite_synchronous}: "
                + ("every acknowledged commit is fsynced (survives power loss)"
                   if self.sqlite_synchronous in ("FULL", "EXTRA")
                   else "survives a killed process, not a power loss")),
        }


SETTLE_SQL = "VACUUM (ANALYZE)"
"""What :func:`settle_database` runs: every table of the database the role may vacuum."""


def settle_database(store: str) -> None:
    """Reclaim the dead rows earlier workloads left in ``store`` (a PostgreSQL URL) and
    refresh its statistics before the next workload starts its processes. Without it
    autovacuum comes to them on its own round (about a minute after the writes) and may
    land inside a later workload's window: a 2.8 s vacuum of another database during a
    B4 took its efficiency from 0.92 to 0.80, and PostgreSQL's CPU per operation from
    about 200 to 1,421 µs. Nothing is deleted: a vacuum only frees what no transaction
    can see any more (the peers' runner truncates its tables instead, which a user's
    store must not be). On a fresh database it also gives the empty tables their real
    size, where PostgreSQL would otherwise assume 10 pages: a plan a connection keeps
    may then be made for a tiny table (the foreign key dropped by the PostgreSQL
    store's migration 8 was such a plan)."""
    import psycopg

    try:
        with psycopg.connect(store, autocommit=True, connect_timeout=30) as conn:
            conn.execute(SETTLE_SQL)
    except psycopg.Error as exc:
        raise TierError(f"vacuuming {urlsplit(store).path.lstrip('/')} before the "
                        f"workload failed: {exc}") from exc


class PostgresTier(_ManagedTier):
    """``conveyor api`` + ``conveyor worker`` on a PostgreSQL store."""

    name = "postgres"
    pool_group = "worker"

    def __init__(self, store: str, workdir: Path, processes: int, concurrency: int,
                 workers: int | None = None, **kw: Any) -> None:
        if not store.startswith(("postgresql://", "postgres://")):
            raise TierError(f"--tier {self.name} needs --store postgresql://...")
        super().__init__(store, workdir, processes, concurrency, **kw)
        self.workers = max(1, workers or 1)
        """Worker processes (one by default). Several overlap their store round trips,
        which raises a drain's rate, but each submission's notification wakes all of
        them and only one finds the work: at a steady trickle the others' empty claims
        cost CPU that the API and the database need. The pool's processes are shared
        out among them."""

    def _transport_flags(self) -> list[str]:
        return []

    def _api_flags(self) -> list[str]:
        return []

    def start(self, *, workers: bool = True) -> None:
        self._migrate(self.store)
        settle_database(self.store)
        api = self._spawn("api", "api", "--store", self.store, "--port", str(self.port),
                          *self._transport_flags(), *self._api_flags())
        wait_ready(self.url, [api])
        if workers:
            self.start_workers()

    def start_workers(self) -> None:
        for i in range(self.workers):
            self._spawn(f"worker-{i + 1}", "worker", "--store", self.store,
                        *self._worker_flags(), *self._transport_flags())

    def _worker_flags(self) -> list[str]:
        share = -(-self.processes // self.workers)  # ceil: every core keeps a process
        return ["--processes", str(share), "--concurrency", str(self.concurrency)]

    def groups(self) -> dict[str, RootsFn]:
        pg_port = urlsplit(self.store).port or 5432
        host = urlsplit(self.store).hostname or ""
        groups = {"api": self._pid_of("api"), "worker": self._pids_of("worker-")}
        if host in ("127.0.0.1", "localhost", "::1", ""):
            groups["postgres"] = Listener(pg_port)
        return groups

    def describe(self) -> dict[str, Any]:
        return {"tier": self.name, "store": "postgresql", "processes": self.processes,
                "workers": self.workers, "concurrency": self.concurrency,
                "durability": "PostgreSQL as configured by the server (fsync and "
                              "synchronous_commit on by default: each commit is flushed)",
                "settle": f"{SETTLE_SQL} of the store's database before each workload"}


RELAY_PLACES = ("api", "separate")
"""Where the Kafka tier's relay runs: inside the API process (``conveyor api --relay``),
or as its own ``conveyor relay``."""


class KafkaTier(PostgresTier):
    """API + worker + relay with ``--transport kafka`` (PostgreSQL stays the store); the
    relay inside the API process (``relay="api"``) or a process of its own."""

    name = "kafka"

    def __init__(self, store: str, workdir: Path, processes: int, concurrency: int,
                 kafka_bootstrap: str | None = None, relay: str = "api", **kw: Any) -> None:
        if not kafka_bootstrap:
            raise TierError("--tier kafka needs --kafka-bootstrap host:port")
        if relay not in RELAY_PLACES:
            raise TierError(f"--relay {relay!r}: one of {', '.join(RELAY_PLACES)}")
        self.kafka_bootstrap = kafka_bootstrap
        self.relay = relay
        super().__init__(store, workdir, processes, concurrency, **kw)

    def _transport_flags(self) -> list[str]:
        return ["--transport", "kafka", "--kafka-bootstrap", self.kafka_bootstrap]

    def _api_flags(self) -> list[str]:
        return ["--relay"] if self.relay == "api" else ["--no-relay"]

    def start(self, *, workers: bool = True) -> None:
        super().start(workers=False)
        if self.relay == "separate":
            self._spawn("relay", "relay", "--store", self.store, *self._transport_flags())
        if workers:
            self.start_workers()

    def log_of(self, queue: str) -> tuple[dict[str, Any], str]:
        """The topic the tier's servers use for ``queue`` (their environment's prefix)."""
        config = load_config({"store": self.store, "transport": "kafka",
                              "kafka_bootstrap": self.kafka_bootstrap}, environ=self.env)
        return make_kafka_client(config).settings(), topic_name(config.kafka_topic_prefix,
                                                                 queue)

    def groups(self) -> dict[str, RootsFn]:
        groups = super().groups()
        if self.relay == "separate":
            groups["relay"] = self._pid_of("relay")
        first = self.kafka_bootstrap.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        if host.strip("[]") in ("127.0.0.1", "localhost", "::1", "") and port.isdigit():
            groups["kafka"] = Listener(int(port))  # the broker (a JVM) shares the cores
        return groups

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tier": self.name, "relay": self.relay,
                "durability": "PostgreSQL commits (outbox) + Kafka acks=all, idempotent "
                              "producer, offsets committed after outcomes are durable"}
