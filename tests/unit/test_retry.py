"""Retry policy and error classification: exponential backoff with full jitter, bounded by
``cap_s`` and ``max_attempts``; permanent failures and ``Retry(after_s)`` overrides."""

from __future__ import annotations

import random

import pytest

from conveyor.errors import Fail, Retry, TaskTimeout
from conveyor.model import ErrorInfo
from conveyor.retry import Decision, Failure, RetryPolicy, classify


def const(value: float) -> RetryPolicy:
    return RetryPolicy(base_s=1.0, cap_s=300.0, rand=lambda: value)


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0),
                                                  (10, 300.0), (50, 300.0), (1000, 300.0)])
def test_backoff_ceiling_doubles_up_to_the_cap(attempt: int, ceiling: float) -> None:
    """The delay after attempt n is ``rand() * min(cap_s, base_s * 2 ** (n - 1))``."""
    assert const(0.5).backoff_s(attempt) == pytest.approx(ceiling * 0.5)
    assert const(0.0).backoff_s(attempt) == 0.0
    assert const(0.999999).backoff_s(attempt) < ceiling


def test_backoff_before_the_first_attempt_uses_base() -> None:
    assert const(1.0 - 1e-9).backoff_s(0) == pytest.approx(1.0)
    assert const(0.5).backoff_s(-3) == pytest.approx(0.5)


def test_backoff_scales_with_base() -> None:
    policy = RetryPolicy(base_s=0.25, cap_s=1.5, rand=lambda: 1.0)
    assert [policy.backoff_s(n) for n in range(1, 6)] == [0.25, 0.5, 1.0, 1.5, 1.5]


def test_full_jitter_covers_the_whole_range() -> None:
    """With a real generator delays spread over ``[0, ceiling)``, not bunched at the top."""
    rng = random.Random(1234)
    policy = RetryPolicy(base_s=1.0, cap_s=300.0, rand=rng.random)
    delays = [policy.backoff_s(4) for _ in range(2000)]
    assert all(0.0 <= d < 8.0 for d in delays)
    assert min(delays) < 0.2 and max(delays) > 7.8
    assert 3.5 < sum(delays) / len(delays) < 4.5


def test_default_policy_uses_random() -> None:
    policy = RetryPolicy()
    assert 0.0 <= policy.backoff_s(1) < 1.0
    assert RetryPolicy() == RetryPolicy(rand=lambda: 0.0)  # rand is not part of equality


ERR = ErrorInfo("E", "boom")


def test_ordinary_failure_retries_with_backoff() -> None:
    decision = const(0.5).decide(Failure(ERR), attempt=2, max_attempts=5)
    assert decision == Decision(1.0)
    assert not decision.dead


def test_attempts_exhausted_goes_dead() -> None:
    policy = const(0.5)
    assert policy.decide(Failure(ERR), attempt=5, max_attempts=5).dead
    assert policy.decide(Failure(ERR), attempt=6, max_attempts=5).dead
    assert policy.decide(Failure(ERR), attempt=1, max_attempts=1).dead
    assert not policy.decide(Failure(ERR), attempt=4, max_attempts=5).dead


def test_permanent_failure_goes_dead_at_once() -> None:
    decision = const(0.5).decide(Failure(ERR, permanent=True), attempt=1, max_attempts=10)
    assert decision.dead and decision.retry_in_s is None


def test_retry_after_overrides_backoff() -> None:
    policy = const(0.5)
    assert policy.decide(Failure(ERR, retry_after_s=42.0), 1, 3) == Decision(42.0)
    assert policy.decide(Failure(ERR, retry_after_s=0.0), 1, 3) == Decision(0.0)
    assert policy.decide(Failure(ERR, retry_after_s=-5.0), 1, 3) == Decision(0.0)
    assert policy.decide(Failure(ERR, retry_after_s=1000.0), 1, 3) == Decision(1000.0)


def test_retry_after_does_not_grant_extra_attempts() -> None:
    assert const(0.5).decide(Failure(ERR, retry_after_s=1.0), 3, 3).dead


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


class Declared(Exception):
    pass


class SubDeclared(Declared):
    pass


def test_classify_ordinary_exception() -> None:
    failure = classify(_raised(ValueError("bad value")))
    assert (failure.permanent, failure.retry_after_s) == (False, None)
    assert (failure.error.type, failure.error.message) == ("ValueError", "bad value")
    assert failure.error.traceback is not None
    assert "ValueError: bad value" in failure.error.traceback
    assert "_raised" in failure.error.traceback


def test_classify_without_traceback_and_empty_message() -> None:
    failure = classify(_raised(KeyError()), with_traceback=False)
    assert failure.error == ErrorInfo("KeyError", "KeyError", None)


def test_classify_fail_is_permanent() -> None:
    failure = classify(_raised(Fail("no such user")))
    assert failure.permanent
    assert (failure.error.type, failure.error.message) == ("Fail", "no such user")


def test_classify_declared_permanent_types_and_subclasses() -> None:
    assert classify(_raised(Declared("x")), (Declared,)).permanent
    assert classify(_raised(SubDeclared("x")), (Declared,)).permanent
    assert classify(_raised(TaskTimeout("slow")), (KeyError, TaskTimeout)).permanent
    assert not classify(_raised(Declared("x")), (KeyError,)).permanent
    assert not classify(_raised(Declared("x"))).permanent


def test_classify_retry_carries_its_delay() -> None:
    failure = classify(_raised(Retry("rate limited", after_s=30.0)))
    assert (failure.permanent, failure.retry_after_s) == (False, 30.0)
    assert failure.error.message == "rate limited"
    assert classify(_raised(Retry())).retry_after_s is None


def test_classify_then_decide() -> None:
    policy = const(0.5)
    assert policy.decide(classify(_raised(Fail("x"))), 1, 5).dead
    assert policy.decide(classify(_raised(Retry(after_s=7.0))), 1, 5) == Decision(7.0)
    assert policy.decide(classify(_raised(OSError("io"))), 3, 5) == Decision(2.0)
