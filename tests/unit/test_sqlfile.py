"""Loading named SQL blocks: comments stay in the files, statements go out short."""

from __future__ import annotations

import pytest
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

from conveyor.store.postgres.core import SQL
from conveyor.store.postgres.keys import KEYS_SQL
from conveyor.store.postgres.outbox import OUTBOX_SQL
from conveyor.store.sqlfile import parse_blocks

TEXT = """-- a file header, ignored
-- name: first
-- What the statement does, for its readers.
SELECT 1  -- a comment after SQL stays
    -- an indented comment line goes
FROM t;

-- name: second
SELECT '--' AS dashes;
"""


def test_blocks_lose_their_comment_lines_and_start_with_their_name() -> None:
    assert parse_blocks(TEXT) == {
        "first": "-- first\nSELECT 1  -- a comment after SQL stays\nFROM t;",
        "second": "-- second\nSELECT '--' AS dashes;",
    }


def test_every_postgres_statement_fits_psycopgs_cache_of_parsed_statements() -> None:
    """psycopg parses the placeholders of a longer statement again on every call."""
    for name, sql in {**SQL, **OUTBOX_SQL, **KEYS_SQL}.items():
        assert len(sql.encode()) <= MAX_CACHED_STATEMENT_LENGTH, name


SHARED = """-- name: _counted
-- A part two statements share.
counted AS (INSERT INTO totals SELECT count(*) FROM done)

-- name: ended
WITH done AS (UPDATE ops SET status = 'dead' RETURNING status),
  -- include: _counted
SELECT 1;

-- name: cancelled
WITH done AS (UPDATE ops SET status = 'cancelled' RETURNING status),
-- include: _counted
SELECT 2;
"""


def test_a_shared_part_is_written_into_each_block_that_includes_it() -> None:
    part = "counted AS (INSERT INTO totals SELECT count(*) FROM done)"
    assert parse_blocks(SHARED) == {
        "ended": "-- ended\nWITH done AS (UPDATE ops SET status = 'dead' RETURNING status),"
                 f"\n{part}\nSELECT 1;",
        "cancelled": "-- cancelled\nWITH done AS (UPDATE ops SET status = 'cancelled' "
                     f"RETURNING status),\n{part}\nSELECT 2;",
    }


@pytest.mark.parametrize(("text", "message"), [
    ("-- name: a\nWITH x AS (1),\n-- include: _missing\nSELECT 1;", "no such part"),
    ("-- name: a\nSELECT 1;\n-- name: b\n-- include: a\n", "no such part"),
    ("-- name: _p\n-- include: _q\n-- name: _q\nSELECT 1\n-- name: a\n-- include: _p\n",
     "a part does not include another"),
])
def test_an_include_that_cannot_be_resolved_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_blocks(text)


def test_the_statements_that_end_operations_share_the_totals_part() -> None:
    """The running totals and the 5-second finishes are written by one text, so the
    statements that end operations cannot drift apart."""
    [part] = {sql[sql.index("counted AS ("):sql.index("SET finished = r.finished")]
              for name, sql in SQL.items() if "INSERT INTO op_recent" in sql}
    assert {name for name, sql in SQL.items() if part in sql} == {
        "complete_many", "release", "rescue_expired", "cancel_waiting"}
    assert not any(name.startswith("_") for name in SQL)
