"""The bench settles a PostgreSQL store before each workload: every table of the database
is vacuumed and analysed then, so autovacuum does not come to an earlier workload's dead
rows inside a later one's window (real PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime

import psycopg
import pytest

from conveyor.bench.tiers import TierError, settle_database
from tests.support.postgres import create_database, drop_database


def _maintenance(url: str) -> dict[str, tuple[datetime | None, datetime | None]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT relname, last_vacuum, last_analyze"
                            " FROM pg_stat_user_tables").fetchall()
    return {name: (vacuumed, analysed) for name, vacuumed, analysed in rows}


@pytest.mark.timeout(120)
def test_settle_vacuums_and_analyses_every_table_of_the_store() -> None:
    url = create_database("bench_settle")
    try:
        migrated = subprocess.run([sys.executable, "-m", "conveyor.cli", "migrate",
                                   "--store", url], capture_output=True, text=True,
                                  timeout=60)
        assert migrated.returncode == 0, migrated.stderr
        before = _maintenance(url)
        assert {"jobs", "operations", "tasks"} <= set(before)
        assert all(v == (None, None) for v in before.values()), before

        settle_database(url)

        deadline = time.monotonic() + 10  # the server publishes its statistics itself
        after = _maintenance(url)
        while any(None in v for v in after.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
            after = _maintenance(url)
        assert set(after) == set(before)
        assert all(None not in v for v in after.values()), after
    finally:
        drop_database(url)


def test_settle_of_an_unreachable_store_is_a_clear_error() -> None:
    with pytest.raises(TierError, match="vacuuming nowhere before the workload failed"):
        settle_database("postgresql://conveyor@127.0.0.1:1/nowhere?connect_timeout=2")
