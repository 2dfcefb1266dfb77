"""Configuration drift: workers sharing a queue must agree on their configuration hash."""

from __future__ import annotations

import dataclasses

from conveyor.api.routes import with_drift
from conveyor.model import WorkerInfo

BASE = WorkerInfo(id="a", host="h", pid=1, queues=("default",), concurrency=4, version="1",
                  config_hash="x", started_at=0.0)


def drift_of(*workers: WorkerInfo) -> dict[str, bool]:
    return {w["id"]: w["drift"] for w in with_drift(list(workers))}


def test_same_hash_no_drift() -> None:
    assert drift_of(BASE, dataclasses.replace(BASE, id="b")) == {"a": False, "b": False}


def test_different_hash_on_a_shared_queue_is_drift() -> None:
    other = dataclasses.replace(BASE, id="b", config_hash="y", queues=("default", "emails"))
    lone = dataclasses.replace(BASE, id="c", config_hash="z", queues=("reports",))
    assert drift_of(BASE, other, lone) == {"a": True, "b": True, "c": False}


def test_gone_workers_do_not_cause_drift() -> None:
    gone = dataclasses.replace(BASE, id="b", config_hash="y", status="gone")
    assert drift_of(BASE, gone) == {"a": False, "b": False}
