"""What the stage-ceiling summary makes of the raw figures: B2b against the API's batch
parse, the store's insert, and the two in series; and a ceiling that failed is named in
the table without losing the others."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.bench.ceilings import _summarize

STORE: dict[str, Any] = {
    "insert": {"1000": {"ops_per_s": 80_000.0}},
    "claim": {}, "complete": {}, "cycle_256": {"ops_per_s": 30_000.0},
}
PARSE = {"batch": 1000, "ops_per_s": 120_000.0, "cpu_us_per_op": 8.3}
RESULTS = {"b2b": {"ops_per_s": 36_000.0}}


def _by_stage(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["stage"]: c for c in summary["comparisons"] if c["workload"] == "B2b"}


def test_b2b_is_read_against_parse_insert_and_both_in_series() -> None:
    summary = _summarize({"parse": PARSE, "store": STORE}, RESULTS)
    rows = {r["stage"]: r for r in summary["rows"]}
    assert rows["API batch parse, 1000 jobs per request"]["value"] == "120,000 ops/s"
    # 1 / (1/120,000 + 1/80,000) = 48,000: one core doing both, one after the other
    series = rows["API batch parse, then store insert"]
    assert series["value"] == "48,000 ops/s"
    assert "at most 80,000 ops/s" in series["detail"]  # side by side: the slower stage
    ratios = {stage: c["ratio"] for stage, c in _by_stage(summary).items()}
    assert ratios == {"API batch parse": 0.3, "store insert 1000/txn": 0.45,
                      "parse, then insert": 0.75}


def test_no_series_bound_for_a_batch_size_the_store_did_not_measure() -> None:
    summary = _summarize({"parse": {**PARSE, "batch": 500}, "store": STORE}, RESULTS)
    assert "parse, then insert" not in _by_stage(summary)
    assert "API batch parse" in _by_stage(summary)


@pytest.mark.parametrize("failed", ["parse", "store", "api-memory", "asgi", "pool"])
def test_a_failed_ceiling_is_named_and_the_others_kept(failed: str) -> None:
    raw: dict[str, Any] = {"parse": PARSE, "store": STORE,
                           failed: {"error": "OSError: no room"}}
    summary = _summarize(raw, RESULTS)
    rows = {r["stage"]: r for r in summary["rows"]}
    assert rows[f"{failed}: not measured"]["detail"] == "OSError: no room"
    kept = {"parse": "API batch parse, 1000 jobs per request",
            "store": "store insert, 1000 jobs/txn"}
    for name, stage in kept.items():
        assert (stage in rows) == (name != failed)
