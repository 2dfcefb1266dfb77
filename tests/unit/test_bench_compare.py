"""The comparison summary: medians per system, Conveyor/peer ratios, each tier's B1
rate against Celery and the fastest peer, and the stage ceilings of two tiers as one table
(pure logic over run reports)."""

from __future__ import annotations

from typing import Any

from benchmarks.compare import deadline_s, merged_ceilings, summarize
from benchmarks.report import markdown


def _run(ops_per_s: float, durability: str = "d") -> dict[str, Any]:
    return {"results": {"b1": {"ops_per_s": ops_per_s}}, "durability": durability}


def test_tiers_are_compared_with_celery_and_the_fastest_peer() -> None:
    summary = summarize({
        "conveyor": [_run(9000), _run(11000), _run(10000)],
        "conveyor-postgres": [_run(3000)],
        "celery": [_run(500), _run(700), _run(600)],
        "pgqueuer": [_run(5000)],
    })
    b1 = "B1 drain ops/s"
    assert summary["systems"]["conveyor"]["metrics"][b1]["median"] == 10000
    # Ratios are the embedded tier's against each peer, never against another tier.
    assert summary["ratios"]["celery"][b1] == round(10000 / 600, 3)
    assert "conveyor-postgres" not in summary["ratios"]
    rows = {r["tier"]: r for r in summary["tiers_vs_peers"]}
    assert rows["conveyor"]["vs_celery"] == round(10000 / 600, 2)
    assert rows["conveyor-postgres"]["fastest_peer"] == "pgqueuer"
    assert rows["conveyor-postgres"]["vs_fastest_peer"] == 0.6
    assert "conveyor-kafka" not in rows

    text = markdown(summary, None)
    assert "| conveyor-postgres | 3,000 | 5.0x | 0.6x (pgqueuer) |" in text


def test_the_deadline_leaves_room_for_a_slow_drain_of_every_operation() -> None:
    assert deadline_s(20_000) == 300.0
    assert deadline_s(100_000) == 1000.0  # 100 ops/s at the slowest


def test_the_embedded_ceilings_and_the_logs_make_one_table() -> None:
    embedded = {"rows": [{"stage": "store insert", "value": "1 ops/s"}], "raw": {"store": {}},
                "comparisons": [{"workload": "B1", "stage": "store", "ratio": 0.5}]}
    kafka = {"rows": [{"stage": "Kafka consume", "value": "2 msgs/s"}], "raw": {"kafka": {}},
             "comparisons": [{"workload": "B1 (Kafka tier)", "stage": "Kafka consume",
                              "ratio": 0.02, "shown": "2 %"}]}
    merged = merged_ceilings([embedded, kafka])
    assert merged is not None
    assert [r["stage"] for r in merged["rows"]] == ["store insert", "Kafka consume"]
    assert [c["workload"] for c in merged["comparisons"]] == ["B1", "B1 (Kafka tier)"]
    assert set(merged["raw"]) == {"store", "kafka"}
    assert merged_ceilings([None, None]) is None
    assert "| **B1 (Kafka tier)** vs Kafka consume | 2 % |" in markdown(
        {"systems": {}, "ceilings": merged}, None)
