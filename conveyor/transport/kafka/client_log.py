"""librdkafka's log lines and error events, rate-limited into Conveyor's logging.

While a broker is down, librdkafka reports every failed reconnect (several a second per
client and broker). :class:`ClientLog` is handed to every client as its ``logger`` and
``error_cb``; per *kind* of event (the log facility, e.g. ``FAIL``, or the error name,
e.g. ``_TRANSPORT``) it logs:

* the first occurrence at once;
* after that at most one line per ``window_s``: the latest message with how many similar
  ones were suppressed since the previous line.

So an outage of any length costs one line per kind per ``window_s``, and nothing is
hidden: every warning and error is counted (``on_event``, e.g. a Prometheus counter) and the latest
error is kept for readiness (:meth:`last_error`). The clock is injectable for tests.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SYSLOG_TO_LOGGING = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.CRITICAL,
                     3: logging.ERROR, 4: logging.WARNING, 5: logging.INFO, 6: logging.INFO,
                     7: logging.DEBUG}
"""librdkafka logs with syslog levels; confluent-kafka maps them already, but a raw
syslog level may still arrive (kept for robustness)."""


CONSEQUENCES = frozenset({"_ALL_BROKERS_DOWN"})
"""Error kinds that follow from another error (the cause, e.g. a refused connection or a
failed authentication): they never replace it as :meth:`ClientLog.last_error`."""


@dataclass(slots=True)
class _Kind:
    logged_at_s: float
    suppressed: int = 0


class ClientLog:
    """A ``logging.Logger`` stand-in (``log``) and an ``error_cb`` for confluent-kafka
    clients. Thread-safe: librdkafka calls it from the threads that poll its clients."""

    def __init__(self, logger: logging.Logger | None = None, *, window_s: float = 30.0,
                 clock_s: Callable[[], float] = time.monotonic,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.logger = logger or logging.getLogger("conveyor.kafka.client")
        self.window_s = window_s
        self._clock_s = clock_s
        self._on_event = on_event
        self._kinds: dict[str, _Kind] = {}
        self._lock = threading.Lock()
        self._last_error: tuple[str, float] | None = None
        self.events = 0
        """Every event reported, logged or not."""

    def report(self, kind: str, level: int, message: str) -> bool:
        """Count one event; log it unless its kind was logged less than ``window_s``
        ago. Returns whether a line was logged."""
        now_s = self._clock_s()
        with self._lock:
            self.events += 1
            if level >= logging.WARNING and (
                    kind not in CONSEQUENCES or self._last_error is None
                    or now_s - self._last_error[1] > self.window_s):
                self._last_error = (f"{kind}: {message}", now_s)
            seen = self._kinds.get(kind)
            if seen is not None and now_s - seen.logged_at_s < self.window_s:
                seen.suppressed += 1
                line = None
            else:
                line = message
                if seen is not None and seen.suppressed:
                    line += (f" (and {seen.suppressed} similar in the last "
                             f"{now_s - seen.logged_at_s:.0f} s)")
                self._kinds[kind] = _Kind(now_s)
        if self._on_event is not None and level >= logging.WARNING:
            with contextlib.suppress(Exception):  # a metrics hook never breaks a client
                self._on_event(kind)
        if line is not None:
            self.logger.log(level, "kafka client %s: %s", kind, line)
            return True
        return False

    def last_error(self, within_s: float | None = None) -> str | None:
        """The latest warning or error (``kind: message``), if any in the last
        ``within_s`` (default ``window_s``)."""
        with self._lock:
            if self._last_error is None:
                return None
            message, at_s = self._last_error
        limit_s = self.window_s if within_s is None else within_s
        return message if self._clock_s() - at_s <= limit_s else None

    # the confluent-kafka interfaces -----------------------------------------------------
    def log(self, level: int, fmt: str, *args: Any) -> None:
        """What confluent-kafka calls for each librdkafka log line:
        ``log(level, "%s [%s] %s", facility, client_name, message)``."""
        facility = str(args[0]) if args else "LOG"
        message = str(args[-1]) if len(args) >= 3 else (fmt % args if args else fmt)
        self.report(facility, SYSLOG_TO_LOGGING.get(level, level) if level < 8 else level,
                    message)

    def error_cb(self, error: Any) -> None:
        """What confluent-kafka calls for client-level errors (``KafkaError``)."""
        name = error.name() if hasattr(error, "name") else type(error).__name__
        text = error.str() if hasattr(error, "str") else str(error)
        fatal = bool(getattr(error, "fatal", lambda: False)())
        self.report(name, logging.ERROR if fatal else logging.WARNING, text)
