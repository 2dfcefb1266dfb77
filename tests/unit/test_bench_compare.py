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


def _tier_run(b2b: float | None, b3h_p50: float, b4: float) -> dict[str, Any]:
    results: dict[str, Any] = {
        "b2": {"throughput_per_s": 5000.0, "latency_ms": {"p95": 60.0}},
        "b3h": {"rate_per_s": 2500.0, "enqueue_to_start_ms": {"p50": b3h_p50, "p99": 20.0},
                "cpu": {"api": {"cores": 1.2}, "others": {"cores": 0.5}}},
        "b4": {"efficiency": b4, "pool": {"runqueue_share": 0.12}}}
    if b2b is not None:
        results["b2b"] = {"ops_per_s": b2b}
    return {"results": results, "durability": "d"}


def test_the_report_says_which_targets_held_in_how_many_repetitions_and_what_bounds_them(
        ) -> None:
    summary = summarize({
        "conveyor": [_tier_run(35_000, 1.0, 0.94), _tier_run(37_000, 1.2, 0.93)],
        "conveyor-kafka": [_tier_run(None, 9.0, 0.91), _tier_run(None, 4.0, 0.89)],
    })
    kafka = summary["systems"]["conveyor-kafka"]["metrics"]
    assert kafka["B3 at half of B2: start p50 ms"]["values"] == [9.0, 4.0]
    assert kafka["B3 at half of B2: cores busy"]["median"] == 1.7
    summary["ceilings"] = {"rows": [], "comparisons": [
        {"workload": "B2b", "stage": "store insert 1000/txn", "ratio": 0.4, "shown": "40 %"},
        {"workload": "B3H (Kafka tier)", "stage": "one message through Kafka",
         "ratio": 5.1, "shown": "5.1x", "detail": "B3H's wait after the log, p50 2.1 ms"}]}
    text = markdown(summary, None)

    assert "| target | conveyor | conveyor-kafka |" in text
    assert ("| B2b batch ingest ops/s >= 100,000 | 36,000, met in 0 of 2 | - |") in text
    # B3 at half of B2 is a target of the PostgreSQL and Kafka tiers only.
    assert ("| B3 at half of B2: start p50 ms < 5 (PostgreSQL and Kafka) | - | "
            "6.50, met in 1 of 2 |") in text
    assert "| B4 CPU efficiency >= 0.90 | 0.935, met in 2 of 2 | 0.900, met in 1 of 2 |" in text
    missed = text[text.index("Missed in some repetitions"):]
    assert ("- conveyor, B2b batch ingest ops/s >= 100,000: 36,000. Measured: 40 % of store "
            "insert 1000/txn.") in missed
    assert ("- conveyor-kafka, B3 at half of B2: start p50 ms < 5 (PostgreSQL and Kafka): "
            "6.50. Measured: B3H's wait after the log, p50 2.1 ms; the machine kept 1.70 "
            "cores busy.") in missed
    assert ("- conveyor-kafka, B4 CPU efficiency >= 0.90: 0.900. Measured: the pool's "
            "processes waited for a core 12 % of the time.") in missed
    assert "conveyor, B4" not in missed and "conveyor-kafka, B2 " not in missed
