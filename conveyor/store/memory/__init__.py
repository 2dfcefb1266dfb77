"""In-memory store: the :class:`~conveyor.store.base.Store` port on plain dicts.

For unit tests of the core and for ``memory://`` demos: nothing survives the process.
Everything else behaves like a database adapter and passes the same conformance suite
(:mod:`conveyor.testing.store_contract`): every method runs under one lock, so each call
is one atomic "transaction"; stored JSON is copied through ``json`` on the way in and
copied again on the way out, so callers never share mutable state with the store.

The clock is injectable (``MemoryStore(clock=fake.time)``) so core tests can move time
without sleeping; all times (``run_at``, lease expiry) come from it.

The package: :mod:`.records` (rows), :mod:`.core` (state, lifecycle), :mod:`.leases` (the
worker side), :mod:`.registry` (tasks, workers, keys), :mod:`.store` (submission, reads),
:mod:`.outbox` (the Kafka tier's outbox capability).
"""

from .outbox import MemoryOutboxStore
from .store import MemoryStore

__all__ = ["MemoryOutboxStore", "MemoryStore"]
