"""The limiter port: one token bucket per key (a tenant, or a client address).

A bucket holds at most ``burst`` tokens and refills at ``rate_per_s``; each request takes
one token or is refused with the time until one will be there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one request. ``limit`` is the burst; ``remaining`` the whole tokens
    left after this request; ``retry_after_s`` is 0 when allowed. ``degraded`` says the
    shared limiter could not be asked and the configured failure mode decided."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: float = 0.0
    degraded: bool = False


class Limiter(Protocol):
    async def acquire(self, key: str) -> Decision:
        """Take one token from ``key``'s bucket if there is one."""

    async def close(self) -> None: ...
