"""Which point of a B2 sweep stands for B2: the highest throughput whose p95 is under the
bound, or, when none is, the lowest p95."""

from __future__ import annotations

from typing import Any

from conveyor.bench.workloads import best_point


def point(connections: int, per_s: float, p95_ms: float | None) -> dict[str, Any]:
    return {"connections": connections, "throughput_per_s": per_s,
            "latency_ms": {"p95": p95_ms}}


def test_the_fastest_point_under_the_bound_wins() -> None:
    points = [point(64, 3_800, 25), point(128, 4_800, 40), point(256, 5_100, 160)]
    assert best_point(points, 150.0)["connections"] == 128


def test_without_a_point_under_the_bound_the_lowest_p95_wins() -> None:
    points = [point(64, 3_800, 200), point(128, 4_800, 180), point(256, 1, None)]
    assert best_point(points, 150.0)["connections"] == 128


def test_the_chosen_point_is_a_copy() -> None:
    points = [point(64, 3_800, 25)]
    chosen = best_point(points, 150.0)
    chosen.pop("latency_ms")
    assert "latency_ms" in points[0]
