"""Offset bookkeeping of the Kafka consumer: commit below the lowest unfinished offset."""

from __future__ import annotations

import random

from conveyor.transport.kafka.offsets import OffsetTracker, PartitionOffsets

TP = ("conveyor.default", 3)


def test_nothing_seen_nothing_to_commit() -> None:
    assert PartitionOffsets(1).committable() is None
    assert OffsetTracker().to_commit() == {}


def test_commit_stops_at_the_lowest_unfinished_offset() -> None:
    part = PartitionOffsets(1)
    for offset in (10, 11, 12, 13):
        part.add(offset)
    assert part.committable() == 10
    part.finish(12)
    part.finish(13)
    assert part.committable() == 10, "finished later offsets never move the commit past 10"
    part.finish(10)
    assert part.committable() == 11
    part.finish(11)
    assert part.committable() == 14
    assert part.unfinished == 0


def test_random_finishing_order_always_commits_a_prefix() -> None:
    rng = random.Random(7)
    part = PartitionOffsets(1)
    offsets = list(range(100, 400))
    for offset in offsets:
        part.add(offset)
    order = offsets[:]
    rng.shuffle(order)
    done: set[int] = set()
    for offset in order:
        part.finish(offset)
        done.add(offset)
        commit = part.committable()
        assert commit is not None
        assert all(o in done for o in range(100, commit))
        assert commit == 400 or commit not in done
    assert part.committable() == 400


def test_a_revoked_assignment_cannot_move_a_later_one() -> None:
    tracker = OffsetTracker()
    old = tracker.add(TP, 5)
    tracker.add(TP, 6)
    assert tracker.revoke(TP) == 5
    new = tracker.assign(TP)
    assert new != old
    tracker.add(TP, 5)
    assert tracker.finish(TP, old, 5) is False
    assert tracker.to_commit() == {TP: 5}
    assert tracker.finish(TP, new, 5) is True
    assert tracker.to_commit() == {TP: 6}


def test_to_commit_reports_only_moved_offsets() -> None:
    tracker = OffsetTracker()
    epoch = tracker.add(TP, 0)
    tracker.finish(TP, epoch, 0)
    assert tracker.to_commit() == {TP: 1}
    tracker.committed({TP: 1})
    assert tracker.to_commit() == {}
    tracker.add(TP, 1)
    assert tracker.to_commit() == {}, "the unfinished offset 1 is already committed"
    tracker.finish(TP, epoch, 1)
    assert tracker.to_commit() == {TP: 2}
    assert tracker.unfinished() == 0
