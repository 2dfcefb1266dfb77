"""Loading named SQL blocks: comments stay in the files, statements go out short."""

from __future__ import annotations

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
