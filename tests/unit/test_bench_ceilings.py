"""What the stage-ceiling summary makes of the raw figures: B2b against the API's batch
parse, the store's insert, and the two in series; the Kafka tier's B1 and B3 against the
log on its own; a ceiling that failed is named in the table without losing the others;
and which ceilings ``--ceilings`` selects."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from conveyor.bench.ceilings import CEILINGS, _summarize
from conveyor.bench.cli import _ceiling_names

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


@pytest.mark.parametrize("failed", ["parse", "store", "api-memory", "asgi", "pool", "kafka"])
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


def _latency(p50: float, p99: float) -> dict[str, float]:
    return {"p50": p50, "p99": p99}


KAFKA: dict[str, Any] = {
    "produce": {"16": {"messages_per_s": 60_000.0, "flush_ms": _latency(0.2, 0.4),
                       "cpu_us_per_message": 8.0, "broker_cpu_us_per_message": 7.0},
                "500": {"messages_per_s": 200_000.0, "flush_ms": _latency(1.5, 4.0),
                        "cpu_us_per_message": 3.0, "broker_cpu_us_per_message": None}},
    "consume": {"messages_per_s": 800_000.0, "cpu_us_per_message": 1.0},
    "one_message": {"messages": 300, "ack_ms": _latency(0.3, 0.9),
                    "to_consumer_ms": _latency(0.5, 3.0)},
}
KAFKA_RESULTS = {"b1": {"ops_per_s": 16_000.0},
                 "b3": {"enqueue_to_start_parts_ms": {"log_to_start": {"p50": 4.0}}}}


def test_the_kafka_tier_is_read_against_the_log_on_its_own() -> None:
    summary = _summarize({"kafka": KAFKA}, KAFKA_RESULTS, "kafka")
    rows = {r["stage"]: r for r in summary["rows"]}
    assert rows["Kafka produce, 16 per flush"]["value"] == "60,000 msgs/s"
    assert "7.0 in the broker" in rows["Kafka produce, 16 per flush"]["detail"]
    assert "broker" not in rows["Kafka produce, 500 per flush"]["detail"]  # not followed
    assert rows["Kafka consume, one consumer"]["value"] == "800,000 msgs/s"
    assert rows["Kafka, one message produce → consume"]["value"] == "p50 0.5 ms"
    compared = {(c["workload"], c["stage"]): c for c in summary["comparisons"]}
    assert compared["B1 (Kafka tier)", "Kafka consume"]["ratio"] == 0.02
    assert compared["B1 (Kafka tier)", "Kafka consume"]["shown"] == "2 %"
    # a latency against its floor reads as a multiple, not as a share of a rate
    after = compared["B3 (Kafka tier)", "one message through Kafka"]
    assert after["ratio"] == 8.0 and after["shown"] == "8.0x"


def test_the_log_is_not_compared_with_another_tier() -> None:
    summary = _summarize({"kafka": KAFKA}, KAFKA_RESULTS, "embedded")
    assert "Kafka consume, one consumer" in {r["stage"] for r in summary["rows"]}
    assert summary["comparisons"] == []


def test_all_ceilings_take_the_log_only_with_a_broker() -> None:
    assert _ceiling_names("all", "127.0.0.1:9092") == list(CEILINGS)
    assert "kafka" not in _ceiling_names("all", None)
    assert _ceiling_names("kafka,parse", "127.0.0.1:9092") == ["kafka", "parse"]
    assert _ceiling_names("none", None) == []
    with pytest.raises(typer.BadParameter, match="needs --kafka-bootstrap"):
        _ceiling_names("kafka", None)
