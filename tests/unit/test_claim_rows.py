"""Claims read from plain tuples (the SQLite store's claiming statements) are the claims
read from rows by column name, in the same order, and the statements return the columns
in the order the tuples are read."""

from __future__ import annotations

import re

from conveyor.store import rows
from conveyor.store.sqlite.core import SQL

ROWS = [
    {"id": "op-b", "job_id": "job-b", "queue": "q", "task": "t.b", "args": '{"x": 1}',
     "key": "k", "attempts": 2, "max_attempts": 5, "timeout_s": 1.5, "lease_token": 7,
     "created_at": 100.25, "headers": '{"traceparent": "00-a-b-01"}', "priority": 0,
     "seq": 3},
    {"id": "op-a", "job_id": "job-a", "queue": "q", "task": "t.a", "args": "{}",
     "key": None, "attempts": 1, "max_attempts": 3, "timeout_s": None, "lease_token": 1,
     "created_at": 99.5, "headers": "{}", "priority": 0, "seq": 9},
    {"id": "op-c", "job_id": "job-c", "queue": "q", "task": "t.c", "args": '{"n": [1]}',
     "key": None, "attempts": 1, "max_attempts": 3, "timeout_s": None, "lease_token": 4,
     "created_at": 101.0, "headers": "{}", "priority": 5, "seq": 12},
]


def test_tuples_give_the_claims_that_named_rows_give() -> None:
    tuples = [tuple(r[c] for c in rows.CLAIM_COLUMNS) for r in ROWS]
    claims = rows.claims_of_tuples(tuples)
    assert claims == rows.claims_in_order(ROWS)
    assert [c.op_id for c in claims] == ["op-c", "op-b", "op-a"]  # priority, then seq
    assert claims[1].args == {"x": 1} and claims[1].headers == {"traceparent": "00-a-b-01"}
    assert (claims[1].attempt, claims[1].lease_token, claims[1].timeout_s) == (2, 7, 1.5)


def test_the_claiming_statements_return_the_columns_in_tuple_order() -> None:
    for name in ("claim", "claim_ids"):
        returning = re.search(r"RETURNING(.*?);", SQL[name], re.S)
        assert returning is not None, name
        columns = tuple(c.strip() for c in returning.group(1).split(","))
        assert columns == rows.CLAIM_COLUMNS, name
