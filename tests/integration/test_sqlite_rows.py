"""Multi-row inserts of the SQLite store (``core.insert_rows``): every row in order, in
statements of a power of two rows within SQLite's parameter limit. A real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conveyor.store.sqlite import SQLiteStore
from conveyor.store.sqlite.core import insert_rows


@pytest.mark.parametrize(("parameter_limit", "sizes"), [
    (32_766, [256, 32, 8, 4]),  # up to 1,024 rows allowed: 300 as powers of two
    (999, [128, 128, 32, 8, 4]),  # SQLite before 3.32: 142 rows of 7 parameters at most
])
async def test_rows_go_in_whole_and_in_order(tmp_path: Path, parameter_limit: int,
                                             sizes: list[int]) -> None:
    store = SQLiteStore(tmp_path / "rows.db")
    await store.migrate()
    conn = sqlite3.connect(tmp_path / "rows.db", isolation_level=None)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, parameter_limit)
    inserts: list[str] = []
    conn.set_trace_callback(lambda sql: inserts.append(sql) if "INSERT" in sql else None)
    rows = [(f"job-{i:04d}", "default", f"q{i % 3}", f'{{"i": {i}}}', "{}", None, 1.5 + i)
            for i in range(300)]
    insert_rows(conn, "insert_jobs_rows", rows)
    conn.set_trace_callback(None)
    stored = conn.execute("SELECT id, queue, metadata, created_at FROM jobs ORDER BY rowid")
    assert [tuple(r) for r in stored] == [(r[0], r[2], r[3], r[6]) for r in rows]
    assert [sql.count("'queued'") for sql in inserts] == sizes  # rows per statement
    conn.close()
