"""API keys for tests: created with the real ``conveyor keys`` command on the server's store."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.processes import PYTHONPATH


def keys_cli(*args: str, store: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    return subprocess.run([sys.executable, "-m", "conveyor.cli", "keys", *args, "--store", store],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def create_key(store: str, tenant: str, scope: str, name: str = "") -> tuple[str, str]:
    """``(key_id, plaintext)`` of a new key made by ``conveyor keys create``."""
    done = keys_cli("create", "--tenant", tenant, "--scope", scope, "--name", name, "--json",
                    store=store)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    return created["id"], created["key"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
