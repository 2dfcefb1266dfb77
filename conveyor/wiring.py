"""Configuration to adapters: the only module that knows every adapter.

Optional adapters are imported lazily, so the embedded tier needs none of their
dependencies; a missing one gets an install hint instead of an ImportError.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from .config import Config
from .errors import ConfigError
from .model import NewJob
from .ratelimit.base import Limiter
from .service import Service, TaskCatalog
from .store.base import Store
from .tasks import Registry
from .transport.base import Transport


def make_store(config: Config) -> Store:
    """The store adapter for ``config.store`` (not yet opened)."""
    url = config.store
    if url.startswith("sqlite://"):
        from .store.sqlite import SQLiteStore

        rest = url.removeprefix("sqlite://")
        path = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel, sqlite:////abs
        return SQLiteStore(Path(path or "conveyor.db"), synchronous=config.sqlite_synchronous)
    if url.startswith("memory:"):
        from .store.memory import MemoryStore

        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from .store.postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL store needs its extra: pip install 'conveyor[postgres]' ({exc})"
            ) from exc
        return PostgresStore(url)  # type: ignore[no-any-return,unused-ignore]
    raise ConfigError(
        f"unknown store URL {url!r}: use sqlite:///path, memory:// or postgresql://..."
    )


def make_transport(config: Config, store: Store) -> Transport:
    if config.transport == "store":
        from .transport.store import StoreTransport

        return StoreTransport(store, poll_s=config.poll_s)
    raise ConfigError(f"transport {config.transport!r} is not available in this version")


def make_service(
    config: Config,
    store: Store,
    local: Registry | None = None,
    on_submit: Callable[[Sequence[NewJob]], Awaitable[None]] | None = None,
) -> Service:
    return Service(store, TaskCatalog(store, local), config.limits, on_submit=on_submit)


def make_limiter(
    config: Config, on_degraded: Callable[[bool], None] | None = None
) -> Limiter | None:
    """The rate limiter for ``config``: None when limiting is off, Redis when
    ``redis_url`` is set (shared by API processes), else this process's memory."""
    if config.rate_limit_per_s <= 0:
        return None
    if config.redis_url:
        from .ratelimit.redis import RedisLimiter

        try:
            return RedisLimiter(config.redis_url, config.rate_limit_per_s,
                                config.rate_limit_burst, on_degraded=on_degraded,
                                failure_mode=config.rate_limit_failure_mode)
        except ImportError as exc:
            raise ConfigError(str(exc)) from exc
    from .ratelimit.memory import MemoryLimiter

    return MemoryLimiter(config.rate_limit_per_s, config.rate_limit_burst)
