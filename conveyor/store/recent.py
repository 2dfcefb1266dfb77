"""The windows of recent finishes that ``stats`` reports (the last minute and the last
five minutes), the same in every store.

The SQLite and PostgreSQL stores count finishes as they happen, per slot of
:data:`SLOT_S` seconds (``op_recent``), and a window is a number of slots ending with the
current one: "the last minute" is 55 to 60 s long, "the last five minutes" 295 to 300 s.
A read sums at most :data:`SLOTS_5M` rows per tenant and queue, whatever the throughput.
The memory store keeps every operation and counts exactly 60 and 300 s back.
"""

from __future__ import annotations

SLOT_S = 5
"""Seconds per slot. Stored slots are numbered with it, so changing it needs a migration
of ``op_recent``; PostgreSQL's ``conveyor_slot()`` (007_op_recent.sql) divides by the
same (a test checks that both agree)."""

SLOTS_1M = 12
"""Slots of "the last minute": the current one and the 11 before it."""

SLOTS_5M = 60
"""Slots of "the last five minutes"; older slots are deleted by the stores' upkeep."""


def slot_of(at_s: float) -> int:
    """The slot of a finish at ``at_s`` (epoch seconds)."""
    return int(at_s // SLOT_S)


def window_params() -> dict[str, int]:
    """The windows' lengths in slots, as the stores' SQL takes them (``slots_1m``,
    ``slots_5m``)."""
    return {"slots_1m": SLOTS_1M, "slots_5m": SLOTS_5M}
