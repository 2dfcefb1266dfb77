"""The split of B3's wait at the log (:func:`conveyor.bench.log_stages.split`): pure."""

from __future__ import annotations

import pytest

from conveyor.bench.log_stages import split


def test_each_wait_splits_at_its_message_and_parts_below_zero_count_as_zero() -> None:
    ops = [
        {"id": "a", "created_at": 100.000, "started_at": 100.010},
        {"id": "b", "created_at": 100.000, "started_at": 100.030},
        # its whole-millisecond timestamp falls before the insert's clock
        {"id": "c", "created_at": 100.0004, "started_at": 100.005},
        {"id": "d", "created_at": 100.000, "started_at": 100.002},  # no message found
        {"id": "e", "created_at": 100.000, "started_at": None},  # never started
    ]
    published = {"a": 100.004, "b": 100.020, "c": 100.000, "e": 100.001}
    parts = split(ops, published)
    assert parts["to_log"]["count"] == parts["log_to_start"]["count"] == 3
    assert parts["to_log"]["max"] == pytest.approx(20.0)
    assert parts["to_log"]["mean"] == pytest.approx((4.0 + 20.0 + 0.0) / 3, abs=0.001)
    assert parts["log_to_start"]["mean"] == pytest.approx((6.0 + 10.0 + 5.0) / 3, abs=0.001)


def test_nothing_found_gives_empty_parts() -> None:
    parts = split([{"id": "a", "created_at": 1.0, "started_at": 2.0}], {})
    assert parts["to_log"]["count"] == 0 and parts["to_log"]["p50"] is None
