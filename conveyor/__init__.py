"""Conveyor: a distributed job execution engine.

The public surface for task authors and clients::

    import conveyor

    @conveyor.task(name="email.send", max_attempts=5, timeout_s=30)
    async def send(to: str, ctx: conveyor.Context) -> None: ...

    client = conveyor.Client("http://127.0.0.1:8000")
    job = client.submit("email.send", {"to": "a@example.org"})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import Fail, Retry, TaskTimeout
from .tasks import Context, task

if TYPE_CHECKING:
    from .client import ApiError, AsyncClient, Client

__version__ = "0.1.0"
__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "Context",
    "Fail",
    "Retry",
    "TaskTimeout",
    "__version__",
    "task",
]


def __getattr__(name: str) -> Any:
    # The HTTP client is imported on first use, so task modules and pool processes
    # that only need ``task`` stay light.
    if name in ("Client", "AsyncClient", "ApiError"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
