"""Redis for tests: the shared server of ``scripts/test.sh`` and private throwaway ones.

``CONVEYOR_TEST_REDIS_URL`` (exported by ``scripts/test.sh``; start a server with
``scripts/redis.sh start``) names the shared server. Tests that kill Redis start their own
``redis-server`` on a free port instead. Without Redis the tests skip locally and **fail**
in CI (``CI`` set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.processes import free_port

ENV = "CONVEYOR_TEST_REDIS_URL"


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def shared_url() -> str:
    url = os.environ.get(ENV, "")
    if not url:
        _missing(f"{ENV} is not set (run scripts/redis.sh start, or scripts/test.sh)")
    return url


class RedisServer:
    """A private ``redis-server`` (no persistence) that a test may kill and restart."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.access(binary, os.X_OK):
            _missing("redis-server is not installed (scripts/redis.sh start installs it)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        import redis

        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_timeout=0.5).ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
