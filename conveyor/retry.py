"""Retry policy and error classification: pure decisions about failed attempts.

:func:`classify` turns what a task raised into a :class:`Failure` (this runs where the
exception lives, including inside pool processes, so only plain data crosses processes).
:class:`RetryPolicy` turns a failure into a :class:`Decision`; the worker carries it out.

Backoff is exponential with full jitter: after failed attempt ``n`` the delay is uniform in
``[0, min(cap_s, base_s * 2 ** (n - 1))]``, which spreads the retries of a failing
dependency instead of synchronising them.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import Fail, Retry
from .model import ErrorInfo


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt as plain data: the error, and what the task said about retrying."""

    error: ErrorInfo
    permanent: bool = False
    retry_after_s: float | None = None


def classify(
    exc: BaseException,
    permanent: tuple[type[BaseException], ...] = (),
    *,
    with_traceback: bool = True,
) -> Failure:
    """``Fail`` and the task's declared ``permanent`` types are permanent; ``Retry`` may carry
    its own delay; anything else is an ordinary, retryable failure."""
    tb = "".join(traceback.format_exception(exc)) if with_traceback else None
    error = ErrorInfo(type(exc).__name__, str(exc) or type(exc).__name__, tb)
    if isinstance(exc, Fail) or (permanent and isinstance(exc, permanent)):
        return Failure(error, permanent=True)
    if isinstance(exc, Retry):
        return Failure(error, retry_after_s=exc.after_s)
    return Failure(error)


@dataclass(frozen=True, slots=True)
class Decision:
    """``retry_in_s`` is None when the operation must go to ``dead``."""

    retry_in_s: float | None

    @property
    def dead(self) -> bool:
        return self.retry_in_s is None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by the operation's ``max_attempts``.

    ``rand`` is injectable (returns a float in [0, 1)) so tests are deterministic.
    """

    base_s: float = 1.0
    cap_s: float = 300.0
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def backoff_s(self, attempt: int) -> float:
        """The jittered delay after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(max(0, attempt - 1), 62)))
        return float(ceiling * self.rand())

    def decide(self, failure: Failure, attempt: int, max_attempts: int) -> Decision:
        """Dead when the failure is permanent or attempts are spent; else retry, after the
        task's own ``Retry(after_s=...)`` delay when it gave one, else the backoff."""
        if failure.permanent or attempt >= max_attempts:
            return Decision(None)
        if failure.retry_after_s is not None:
            return Decision(max(0.0, failure.retry_after_s))
        return Decision(self.backoff_s(attempt))
