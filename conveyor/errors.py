"""Exceptions: those a task raises to steer its retries, and those the system raises.

Tasks raise :class:`Retry` to ask for another attempt after a given delay, and
:class:`Fail` (or any exception type listed in the task's ``permanent`` option) to go
straight to ``dead`` without spending further attempts.
"""

from __future__ import annotations


class Retry(Exception):
    """Raised by a task: try again after ``after_s`` seconds (the policy's backoff if None)."""

    def __init__(self, message: str = "retry requested", *, after_s: float | None = None) -> None:
        super().__init__(message)
        self.after_s = after_s


class Fail(Exception):
    """Raised by a task: this failure is permanent; the operation goes to ``dead`` now."""


class TaskTimeout(Exception):
    """An attempt ran past its ``timeout_s`` and was interrupted."""


class ConveyorError(Exception):
    """Base of the errors the system itself raises."""


class ValidationError(ConveyorError):
    """A submission is malformed: unknown task, bad arguments, limits exceeded."""

    def __init__(self, message: str, *, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class NotFound(ConveyorError):
    """No such job or operation (for this tenant)."""


class IdempotencyConflict(ConveyorError):
    """An idempotency key was reused with a different request body."""


class StoreUnavailable(ConveyorError):
    """The store cannot be reached right now; the caller may retry later."""


class SchemaMismatch(ConveyorError):
    """The store's schema version is not the one this program knows; run ``conveyor migrate``."""


class ConfigError(ConveyorError):
    """The configuration is invalid; the message says which setting and why."""


class Overloaded(ConveyorError):
    """A submission is refused to protect the system (backpressure): answer ``status``
    (429 or 503) and ask the client to retry after ``retry_after_s``."""

    def __init__(self, message: str, *, status: int = 503, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class TransportError(ConveyorError):
    """The transport (e.g. Kafka) refused or did not answer; the message says which."""
