"""Running real Conveyor processes in tests: ``conveyor serve`` and friends as subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
TEST_TASKS_DIR = REPO / "tests" / "support"
PYTHONPATH = os.pathsep.join([str(TEST_TASKS_DIR), str(REPO)])
"""The test tasks, and this checkout's ``conveyor`` ahead of any installed copy."""
SETTLE_S = 0.3
"""How long a frozen process's statements already sent are given to finish."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ConveyorProcess:
    """One ``python -m conveyor.cli ARGS`` subprocess with its output in a log file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self.port = port
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.env = {**os.environ, "PYTHONPATH": PYTHONPATH, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ConveyorProcess:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor.cli", *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.log_path.parent,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"process exited early:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"not ready after {timeout_s} s:\n{self.log_path.read_text()[-4000:]}")

    def kill9(self) -> None:
        """SIGKILL the whole process group (the server and its pool processes)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def kill9_when(self, predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """``kill -9`` at a moment ``predicate`` holds, checked with the process frozen
        (SIGSTOP), so what it sees is what the process leaves behind: waits for the
        predicate, freezes, checks again, and resumes and retries if it no longer holds.

        The check waits ``SETTLE_S`` after freezing: a statement the process had already
        sent still runs, and one that is its own transaction (a PostgreSQL outcome batch)
        commits without the frozen client."""
        assert self.proc is not None
        deadline_s = time.monotonic() + timeout_s
        while True:
            wait_until(predicate, max(0.1, deadline_s - time.monotonic()), 0.005)
            os.killpg(self.proc.pid, signal.SIGSTOP)
            time.sleep(SETTLE_S)
            if predicate():
                break
            os.killpg(self.proc.pid, signal.SIGCONT)
        self.kill9()

    def stop(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)


def serve(tmp: Path, *extra: str, env: dict[str, str] | None = None,
          db: str = "conveyor.db", name: str = "serve") -> ConveyorProcess:
    """Start ``conveyor serve`` on a free port with a SQLite file in ``tmp``; wait until ready."""
    port = free_port()
    proc = ConveyorProcess(
        ["serve", "--port", str(port), "--store", f"sqlite:///{tmp / db}", *extra],
        tmp / f"{name}.log", env=env, port=port,
    )
    proc.start().wait_ready()
    return proc


def wait_until(predicate, timeout_s: float = 60.0, interval_s: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)
