"""Schema versions on PostgreSQL: processes refuse a database they do not know, and
``conveyor migrate`` is safe when several processes run it at once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.store.postgres import SCHEMA_VERSION
from tests.support.fleet import migrate, query
from tests.support.postgres import create_database, drop_database


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    url = create_database("conveyor_schema")
    try:
        yield url
    finally:
        drop_database(url)


def _worker(url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conveyor.cli", "worker", "--store", url],
                          capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


def test_unmigrated_database_is_refused_with_one_line(database: str, tmp_path: Path) -> None:
    done = _worker(database, tmp_path)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "has no Conveyor schema" in lines[0] and "conveyor migrate --store" in lines[0]


def test_concurrent_migrations_apply_once(database: str, tmp_path: Path) -> None:
    runs = [subprocess.Popen([sys.executable, "-m", "conveyor.cli", "migrate", "--store",
                              database], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=tmp_path) for _ in range(4)]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs
    assert all(f"schema at version {SCHEMA_VERSION}" in out for out, _ in outputs)
    assert query(database, "SELECT version FROM schema_version") == [{"version": SCHEMA_VERSION}]
    assert migrate(database, tmp_path).returncode == 0  # and again: nothing to do


def test_newer_schema_is_refused(database: str, tmp_path: Path) -> None:
    assert migrate(database, tmp_path).returncode == 0
    query(database, "UPDATE schema_version SET version = version + 1")
    try:
        done = _worker(database, tmp_path)
        assert done.returncode != 0
        assert "newer than this Conveyor" in done.stderr and "upgrade Conveyor" in done.stderr
        again = migrate(database, tmp_path)
        assert again.returncode != 0 and "newer than this Conveyor" in again.stderr
    finally:
        query(database, "UPDATE schema_version SET version = version - 1")
