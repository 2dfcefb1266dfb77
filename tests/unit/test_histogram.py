"""The lock-free histogram exposes what ``prometheus_client``'s own would, observation for
observation (values on a bound count in that bound's bucket), and refuses wrong labels."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from conveyor.observability.histogram import FastHistogram

BUCKETS = (0.0005, 0.001, 0.0025, 1, 60)
VALUES = (0.0, 0.0001, 0.0005, 0.0007, 0.001, 0.2, 1.0, 3.0, 1000.0, 0.0025)


def _text(registry: CollectorRegistry) -> str:
    """The exposition without the creation times (when each child was made)."""
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1", generate_latest(registry).decode())


def test_exposition_matches_the_client_library() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("x_seconds", "Doc.", ["queue", "task"], buckets=BUCKETS,
                          registry=theirs)
    fast = FastHistogram("x_seconds", "Doc.", ["queue", "task"], BUCKETS, ours)
    for i, value in enumerate(VALUES):
        labels = ("q", "a") if i % 3 else ("q", "b")
        reference.labels(*labels).observe(value)
        fast.labels(*labels).observe(value)
    text = _text(ours)
    assert text == _text(theirs)
    assert 'x_seconds_bucket{le="0.0025",queue="q",task="b"} 3.0' in text  # on its bound
    assert 'x_seconds_count{queue="q",task="a"} 6.0' in text
    assert 'x_seconds_created{queue="q",task="a"}' in text


def test_a_child_is_made_once_per_label_set() -> None:
    fast = FastHistogram("y_seconds", "Doc.", ["queue"], BUCKETS, CollectorRegistry())
    assert fast.labels("q") is fast.labels("q")
    assert fast.labels("q") is not fast.labels("r")


def test_wrong_labels_are_refused() -> None:
    fast = FastHistogram("z_seconds", "Doc.", ["queue", "task"], BUCKETS, CollectorRegistry())
    with pytest.raises(ValueError, match="takes labels"):
        fast.labels("only-one")
