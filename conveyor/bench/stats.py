"""Percentiles and summaries of latency samples (nearest-rank, so they are always ordered
and always an observed value)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

PERCENTILES = (50.0, 95.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of already sorted values (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize_ms(seconds: Iterable[float], points: Sequence[float] = PERCENTILES
                 ) -> dict[str, float | int | None]:
    """Count, mean, max and percentiles of durations given in seconds, in milliseconds.

    Keys: ``count``, ``mean``, ``max``, and ``p50``, ``p95``, ``p99``, ``p999`` (for 99.9).
    """
    values = sorted(v for v in seconds if v is not None and not math.isnan(v))
    out: dict[str, float | int | None] = {"count": len(values)}
    for p in points:
        value = percentile(values, p)
        out[pkey(p)] = None if value is None else round(value * 1000.0, 3)
    out["mean"] = round(sum(values) / len(values) * 1000.0, 3) if values else None
    out["max"] = round(values[-1] * 1000.0, 3) if values else None
    return out


def pkey(p: float) -> str:
    """``50 -> 'p50'``, ``99.9 -> 'p999'``."""
    return "p" + (f"{p:g}".replace(".", ""))


def rate(count: float, seconds: float | None) -> float | None:
    if not seconds or seconds <= 0:
        return None
    return round(count / seconds, 1)
