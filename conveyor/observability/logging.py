"""Structured logs: one JSON object per line, or a human format on a terminal.

Context that applies to a log line (job id, operation id, attempt, worker id, trace id)
travels in a :class:`contextvars.ContextVar`, so every line logged while an attempt runs
carries it without threading it through calls. Argument payloads and secrets are never
logged.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "conveyor_log_context", default={}  # noqa: B039 - never mutated, only replaced
)


class log_context:
    """Add ``fields`` (those not None) to every log line emitted inside the block (in this
    task). A plain class rather than a generator: the worker enters one per attempt."""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields
        self._token: contextvars.Token[dict[str, Any]] | None = None

    def __enter__(self) -> None:
        self._token = _context.set(
            {**_context.get(), **{k: v for k, v in self._fields.items() if v is not None}})

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _context.reset(self._token)
            self._token = None


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...context, ...extra}`` on one line."""

    RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_context.get(),
        }
        for key, value in vars(record).items():
            if key not in self.RESERVED and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = _context.get()
        return line + ("  " + " ".join(f"{k}={v}" for k, v in ctx.items()) if ctx else "")


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure the root logger once: ``fmt`` is ``json``, ``text`` or ``auto`` (text on
    a terminal, JSON otherwise)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else HumanFormatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
