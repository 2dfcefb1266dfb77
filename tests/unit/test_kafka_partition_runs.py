"""The partitions of a batch of unkeyed messages (pure logic of the relay's producer)."""

from __future__ import annotations

from collections import Counter

from conveyor.transport.kafka.producer import spread


def test_a_batch_smaller_than_two_runs_stays_on_one_partition() -> None:
    assert spread(1, 12, 5, run=32) == [5]
    assert spread(63, 12, 11, run=32) == [11] * 63


def test_runs_are_consecutive_even_and_wrap_around() -> None:
    chosen = spread(100, 12, 10, run=32)  # three runs: 10, 11, then 0
    assert Counter(chosen) == {10: 34, 11: 33, 0: 33}
    assert chosen == sorted(chosen, key=lambda p: (p - 10) % 12)  # in order, no interleaving


def test_a_large_batch_covers_every_partition_once() -> None:
    chosen = spread(1000, 12, 3, run=32)
    assert set(Counter(chosen).values()) == {83, 84}
    assert len(set(chosen)) == 12
