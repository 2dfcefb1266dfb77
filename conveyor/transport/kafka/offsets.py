"""Which offset of each partition may be committed: pure bookkeeping, no Kafka.

A consumer hands messages out in offset order but they finish in any order (different
keys run in parallel). The offset committed for a partition is always the lowest one not
yet finished (or one past the highest seen when all are finished), so a restart resumes
at the first message whose outcome may not be durable: nothing is skipped; messages past
it that were already finished come again and are recognised as stale by the store.

Each assignment of a partition gets a new *epoch*: a message handed out under an earlier
assignment (before a revoke) can never move the committed offset of a later one.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class PartitionOffsets:
    """Unfinished offsets of one partition under one assignment."""

    epoch: int
    _pending: list[int] = field(default_factory=list)
    _finished: set[int] = field(default_factory=set)
    _next: int | None = None
    """One past the highest offset seen."""
    committed: int | None = None
    """The last offset committed (or known to be), to skip needless commits."""

    def add(self, offset: int) -> None:
        heapq.heappush(self._pending, offset)
        if self._next is None or offset >= self._next:
            self._next = offset + 1

    def finish(self, offset: int) -> None:
        self._finished.add(offset)
        while self._pending and self._pending[0] in self._finished:
            self._finished.discard(heapq.heappop(self._pending))

    @property
    def unfinished(self) -> int:
        return len(self._pending) - len(self._finished)

    def committable(self) -> int | None:
        """The offset to commit: the lowest unfinished one, else one past the highest
        seen; ``None`` before any message was seen."""
        if self._pending:
            return self._pending[0]
        return self._next


class OffsetTracker:
    """Per-partition :class:`PartitionOffsets` across assignments and revocations."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, PartitionOffsets] = {}
        self._epoch = 0

    def assign(self, tp: TopicPartition) -> int:
        self._epoch += 1
        self._parts[tp] = PartitionOffsets(self._epoch)
        return self._epoch

    def revoke(self, tp: TopicPartition) -> int | None:
        """Forget the partition; returns its last committable offset."""
        part = self._parts.pop(tp, None)
        return part.committable() if part is not None else None

    def epoch(self, tp: TopicPartition) -> int | None:
        part = self._parts.get(tp)
        return part.epoch if part is not None else None

    def add(self, tp: TopicPartition, offset: int) -> int:
        """Record a message handed out; returns the epoch to finish it with. A message
        of a partition not (yet) assigned starts an assignment."""
        part = self._parts.get(tp)
        if part is None:
            self.assign(tp)
            part = self._parts[tp]
        part.add(offset)
        return part.epoch

    def finish(self, tp: TopicPartition, epoch: int, offset: int) -> bool:
        """Mark a message finished; ``False`` (ignored) if its assignment is over."""
        part = self._parts.get(tp)
        if part is None or part.epoch != epoch:
            return False
        part.finish(offset)
        return True

    def to_commit(self) -> dict[TopicPartition, int]:
        """Committable offsets that moved since they were last marked committed."""
        out = {}
        for tp, part in self._parts.items():
            offset = part.committable()
            if offset is not None and offset != part.committed:
                out[tp] = offset
        return out

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            part = self._parts.get(tp)
            if part is not None:
                part.committed = offset

    def unfinished(self, tps: list[TopicPartition] | None = None) -> int:
        return sum(p.unfinished for tp, p in self._parts.items() if tps is None or tp in tps)

    def partitions(self) -> list[TopicPartition]:
        return sorted(self._parts)
