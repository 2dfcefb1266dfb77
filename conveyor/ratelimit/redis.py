"""Token buckets in Redis, shared by every API process that uses the same Redis.

One atomic Lua script per request reads, refills and takes from the bucket, timed by the
Redis server's clock (so API hosts with skewed clocks agree). Buckets expire once they
would be full again, so idle tenants cost no memory.

When Redis cannot be reached (or answers too slowly: ``timeout_s``), the configured
failure mode decides: ``open`` lets the request through, ``local`` applies a bucket in
this process's memory, ``closed`` refuses (the API answers 503). Requests are never held
up by a dead Redis: after a failure Redis is not asked again for ``retry_s``.
``on_degraded(True/False)`` is called on each change, for logs and metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .base import Decision
from .memory import MemoryLimiter

log = logging.getLogger("conveyor.ratelimit")
MODES = ("open", "local", "closed")
PREFIX = "conveyor:ratelimit:"
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, tostring(tokens), tostring(retry)}
"""


class RedisLimiter:
    def __init__(self, url: str, rate_per_s: float, burst: int, *, failure_mode: str = "open",
                 timeout_s: float = 0.25, retry_s: float = 1.0,
                 on_degraded: Callable[[bool], None] | None = None) -> None:
        if failure_mode not in MODES:
            raise ValueError(f"failure_mode must be one of {MODES}")
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError("shared rate limits need the redis extra: "
                              "pip install 'conveyor[redis]'") from exc
        self.url = url
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.failure_mode = failure_mode
        self._retry_s = retry_s
        self._on_degraded = on_degraded
        self._client: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry_on_timeout=False)
        self._script: Any = self._client.register_script(TOKEN_BUCKET)
        self._local = MemoryLimiter(rate_per_s, burst)
        self._down_until = 0.0
        self.degraded = False

    async def acquire(self, key: str) -> Decision:
        if time.monotonic() >= self._down_until:
            try:
                allowed, tokens, retry = await self._script(
                    keys=[PREFIX + key], args=[self.rate_per_s, self.burst])
            except Exception as exc:  # any Redis or socket failure: degrade, keep serving
                self._set_degraded(True, exc)
                self._down_until = time.monotonic() + self._retry_s
            else:
                self._set_degraded(False)
                return Decision(bool(int(allowed)), self.burst, int(float(tokens)),
                                float(retry))
        return self._fallback(key)

    def _fallback(self, key: str) -> Decision:
        if self.failure_mode == "local":
            d = self._local.take(key)
            return Decision(d.allowed, d.limit, d.remaining, d.retry_after_s, degraded=True)
        if self.failure_mode == "closed":
            return Decision(False, self.burst, 0, self._retry_s, degraded=True)
        return Decision(True, self.burst, self.burst, degraded=True)

    def _set_degraded(self, degraded: bool, exc: BaseException | None = None) -> None:
        if degraded == self.degraded:
            return
        self.degraded = degraded
        if degraded:
            log.warning("rate limiter: Redis at %s unreachable (%s: %s); failure mode %r: %s",
                        self._where(), type(exc).__name__, exc, self.failure_mode,
                        {"open": "requests are not limited",
                         "local": "limits are applied per API process",
                         "closed": "requests are refused with 503"}[self.failure_mode])
        else:
            log.warning("rate limiter: Redis at %s reachable again; shared limits restored",
                        self._where())
        if self._on_degraded is not None:
            self._on_degraded(degraded)

    def _where(self) -> str:
        return self.url.rsplit("@", 1)[-1]

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception:  # closing a client whose server is gone
            log.debug("closing the Redis client failed", exc_info=True)
