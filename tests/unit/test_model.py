"""The domain model's pure parts: job status derivation, ids, outcome constructors."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from conveyor.model import (
    OPEN,
    TERMINAL,
    WAITING,
    Claim,
    ErrorInfo,
    Job,
    JobStatus,
    NewJob,
    NewOperation,
    Operation,
    OpStatus,
    Outcome,
    OutcomeKind,
    job_status,
    new_id,
    new_ids,
)

S = OpStatus


@pytest.mark.parametrize(
    ("statuses", "started", "expected"),
    [
        ([S.QUEUED], False, JobStatus.QUEUED),
        ([S.SCHEDULED, S.QUEUED], False, JobStatus.QUEUED),
        ([S.RETRYING], False, JobStatus.QUEUED),  # only ``started`` says it ran before
        ([S.RETRYING], True, JobStatus.RUNNING),
        ([S.QUEUED], True, JobStatus.RUNNING),  # released: the attempt ran, uncounted
        ([S.RUNNING], False, JobStatus.RUNNING),
        ([S.SUCCEEDED, S.QUEUED], False, JobStatus.RUNNING),
        ([S.DEAD, S.QUEUED], True, JobStatus.RUNNING),
        ([S.CANCELLED, S.SCHEDULED], False, JobStatus.RUNNING),
        ([S.SUCCEEDED], True, JobStatus.SUCCEEDED),
        ([S.SUCCEEDED, S.SUCCEEDED], True, JobStatus.SUCCEEDED),
        ([S.SUCCEEDED, S.DEAD], True, JobStatus.FAILED),
        ([S.DEAD, S.CANCELLED], True, JobStatus.FAILED),
        ([S.CANCELLED, S.SUCCEEDED], True, JobStatus.CANCELLED),
        ([S.CANCELLED], False, JobStatus.CANCELLED),
    ],
)
def test_job_status(statuses: list[OpStatus], started: bool, expected: JobStatus) -> None:
    """All final: failed > cancelled > succeeded; otherwise running once anything started
    or finished, else queued."""
    assert job_status(statuses, started) is expected


def test_state_sets() -> None:
    assert {S.SUCCEEDED, S.DEAD, S.CANCELLED} == TERMINAL
    assert {S.SCHEDULED, S.QUEUED, S.RETRYING} == WAITING
    assert WAITING | {S.RUNNING} == OPEN
    assert all(s.terminal == (s in TERMINAL) for s in OpStatus)
    assert set(OpStatus) == TERMINAL | OPEN


@pytest.mark.parametrize("make", [lambda: [new_id()], lambda: new_ids(3)],
                         ids=["new_id", "new_ids"])
def test_new_id_layout(make: Callable[[], list[str]]) -> None:
    """32 hex digits in the UUIDv7 layout: version 7, RFC 9562 variant, ms timestamp."""
    before_ms = time.time_ns() // 1_000_000
    values = make()
    after_ms = time.time_ns() // 1_000_000
    for value in values:
        assert len(value) == 32 and int(value, 16) >= 0
        assert value == value.lower()
        assert value[12] == "7"
        assert value[16] in "89ab"
        assert before_ms <= int(value[:12], 16) <= after_ms


def test_new_id_unique() -> None:
    ids = [new_id() for _ in range(20_000)] + new_ids(20_000) + new_ids(20_000)
    assert len(set(ids)) == len(ids)
    assert new_ids(0) == []


def test_new_id_random_parts_differ_across_threads_and_forks() -> None:
    """Random bits are read in bulk, so a thread or a forked child reusing another's unread
    bits would repeat its ids (same millisecond, same random part)."""
    new_id()  # this thread has unread random numbers now
    in_thread: list[str] = []
    worker = threading.Thread(target=lambda: in_thread.extend(new_id() for _ in range(50)))
    worker.start()
    worker.join()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then exit at once
        os.write(write_end, ",".join(new_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as pipe:
        in_child = pipe.read().split(",")
    in_parent = [new_id() for _ in range(50)]
    random_part = {i[13:] for i in in_parent}
    assert len(in_child) == 50
    assert not random_part & {i[13:] for i in in_child}
    assert not random_part & {i[13:] for i in in_thread}


def test_new_id_sorts_by_creation_time() -> None:
    """Ids made in later milliseconds sort after earlier ones (as strings too)."""
    ids = []
    for _ in range(5):
        ids.append(new_id())
        time.sleep(0.002)
    assert ids == sorted(ids)


def test_new_job_gets_a_fresh_id() -> None:
    ops = (NewOperation("t", {}),)
    assert NewJob(ops).id != NewJob(ops).id


def _claim() -> Claim:
    return Claim(op_id="op1", job_id="j1", queue="q", task="t", args={}, key=None, attempt=2,
                 max_attempts=3, timeout_s=None, lease_token=7, created_at=1.0)


def test_outcome_constructors() -> None:
    """Each constructor fences with the claim's op id and token and sets only its fields."""
    claim = _claim()
    err = ErrorInfo("E", "m", "tb")
    ok = Outcome.succeeded(claim, {"r": 1})
    assert (ok.op_id, ok.lease_token, ok.kind, ok.result, ok.error) == (
        "op1", 7, OutcomeKind.SUCCEEDED, {"r": 1}, None)
    retry = Outcome.retry(claim, err, 2.5)
    assert (retry.kind, retry.error, retry.retry_in_s, retry.result) == (
        OutcomeKind.RETRY, err, 2.5, None)
    dead = Outcome.dead(claim, err)
    assert (dead.kind, dead.error, dead.lease_token) == (OutcomeKind.DEAD, err, 7)
    cancelled = Outcome.cancelled(claim)
    assert cancelled.kind is OutcomeKind.CANCELLED
    assert cancelled.error is not None and cancelled.error.type == "Cancelled"


def test_error_info_json_round_trip() -> None:
    err = ErrorInfo("ValueError", "bad", "Traceback ...")
    assert ErrorInfo.from_json(err.to_json()) == err
    assert ErrorInfo.from_json(ErrorInfo("E", "m").to_json()) == ErrorInfo("E", "m", None)
    assert ErrorInfo.from_json(None) is None
    assert ErrorInfo.from_json({}) is None


def test_to_json_uses_plain_values() -> None:
    op = Operation(
        id="o", job_id="j", seq=1, queue="q", task="t", args={"a": 1}, key="k", priority=0,
        status=S.DEAD, attempts=1, max_attempts=3, timeout_s=None, result=None,
        error=ErrorInfo("E", "m"), created_at=1.0, run_at=1.0, started_at=2.0,
        finished_at=3.0, worker_id="w",
    )
    data = op.to_json()
    assert data["status"] == "dead"
    assert data["error"] == {"type": "E", "message": "m", "traceback": None}
    job = Job(id="j", queue="q", tenant="t", status=JobStatus.FAILED, metadata={},
              created_at=1.0, operations=(op,))
    assert job.to_json()["status"] == "failed"
    assert job.to_json()["operations"] == [data]


def test_a_delivered_claim_keeps_every_other_field() -> None:
    """``Claim.delivered`` lists the fields itself (for speed): a field added to
    ``Claim`` and not to it would be lost here."""
    import dataclasses

    claim = dataclasses.replace(
        _claim(), key="k", timeout_s=2.5, headers={"traceparent": "x"}, args={"a": 1})
    delivered = claim.delivered(("consumer", "entry"), {"h": "1"})
    assert delivered.delivery == ("consumer", "entry") and delivered.headers == {"h": "1"}
    for f in dataclasses.fields(Claim):
        if f.name not in ("delivery", "headers"):
            assert getattr(delivered, f.name) == getattr(claim, f.name), f.name
    assert [f.name for f in dataclasses.fields(Claim)] == [  # a new field: add it there
        "op_id", "job_id", "queue", "task", "args", "key", "attempt", "max_attempts",
        "timeout_s", "lease_token", "created_at", "headers", "delivery"]
