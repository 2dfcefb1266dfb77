"""Schemathesis fuzzes a real API process against its own OpenAPI document: every check
(server errors, status codes, content types, headers, response schemas, negative and
positive data, authentication, use after free, resource availability, ...) and every
phase (examples, coverage, fuzzing, stateful), with a valid admin key. Zero failures.

One documented allowance (``schemathesis.toml`` below): submissions are valid only for
registered tasks with arguments matching each task's own schema, which the static
document cannot express, so a schema-valid submission may be refused with 422.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.auth import create_key
from tests.support.processes import ConveyorProcess, free_port

CONFIG = """
[[operations]]
include-method = "POST"
include-path-regex = "^/v1/jobs(/batch)?$"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "401", "403", "404", "409", "422", "429", "503",
]
"""


def test_the_api_passes_every_schemathesis_check(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'conveyor.db'}"
    migrate = subprocess.run([sys.executable, "-m", "conveyor.cli", "migrate", "--store", store],
                             capture_output=True, text=True, timeout=60, check=False)
    assert migrate.returncode == 0, migrate.stderr
    _, key = create_key(store, "fuzz", "admin")
    port = free_port()
    # API only (no worker): fuzzed submissions are stored, never run. Rate limits stay on,
    # generous enough not to turn the run into a test of 429s.
    env = {"CONVEYOR_AUTH": "required", "CONVEYOR_RATE_LIMIT_PER_S": "1000",
           "CONVEYOR_RATE_LIMIT_BURST": "2000"}
    api = ConveyorProcess(["api", "--port", str(port), "--store", store], tmp_path / "api.log",
                          env=env, port=port).start()
    api.wait_ready()
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", "schemathesis.toml",
             "run", f"{api.url}/openapi.json", "--checks", "all",
             "--header", f"Authorization: Bearer {key}", "--max-examples", "30",
             "--workers", "1", "--seed", "20261202", "--generation-database", "none",
             "--request-timeout", "10"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False)
    finally:
        api.stop()
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert " passed" in run.stdout and "failure" not in run.stdout.split("SUMMARY")[-1], report
    assert "Traceback" not in api.log_path.read_text(), "no unexpected error on the server"
