"""The store port: the durable source of truth for jobs, operations, tasks and workers.

Every adapter (memory, SQLite, PostgreSQL) implements :class:`Store` and passes the
conformance suite in :mod:`conveyor.testing.store_contract`. Methods are batch-first:
callers group work, adapters turn a batch into one transaction.

Guarantees every adapter gives:

* ``insert_jobs`` returns only after the jobs are durable (committed, synced per the
  backend's durability settings); a job is written whole or not at all. Asked to, it
  returns the created jobs as stored along with the answers.
* Idempotency keys are unique per tenant, also under concurrent inserts: one job wins,
  the others get ``Submitted(created=False)`` (same body) or ``conflict=True``.
* ``claim`` hands an operation to one claimer at a time, respects per-key order (see
  :mod:`conveyor.model`), priority (higher first) then submission order, and ``run_at``.
* ``complete_many`` and ``extend_leases`` are fenced: they act only on the lease with the
  given token, still ``running``; anything else is ignored and reported as not accepted.
* Times (``run_at``, leases) come from the store's clock, never the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..keys import ApiKey
from ..model import (
    Claim,
    Job,
    JobFilter,
    Lease,
    LeaseState,
    NewJob,
    Operation,
    OpFilter,
    Outcome,
    QueueStats,
    Submitted,
    TaskInfo,
    WorkerInfo,
)


class Store(Protocol):
    """Durable state. All methods may raise :class:`conveyor.errors.StoreUnavailable`."""

    # lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and check the schema version (raises ``SchemaMismatch`` if unknown)."""

    async def close(self) -> None: ...

    async def migrate(self) -> int:
        """Bring the schema to the latest version; returns that version. Idempotent."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers a trivial query."""

    async def now(self) -> float:
        """The store's clock, Unix seconds (leases and schedules are measured by it)."""

    # submission and reads --------------------------------------------------------------
    async def insert_jobs(
        self, jobs: Sequence[NewJob], *, return_jobs: bool = False
    ) -> list[Submitted]:
        """Insert jobs with their operations in one transaction; one answer per job.

        With ``return_jobs``, the answer of every created job carries it as stored
        (``Submitted.job``, read in the same transaction: equal to what ``get_jobs`` gives
        right after the commit, before anything else changed it), so a caller that shows
        the new job needs no second read. Off by default: batches do not pay for it."""

    async def get_jobs(self, ids: Sequence[str], tenant: str | None = None) -> list[Job]:
        """The jobs that exist (and belong to ``tenant`` when given), in any order."""

    async def list_jobs(self, flt: JobFilter) -> list[Job]:
        """Newest first; ``flt.after`` is the id of the last job of the previous page."""

    async def list_operations(self, flt: OpFilter) -> list[Operation]:
        """Operations in ``seq`` order after ``flt.after_seq``."""

    async def cancel_jobs(self, ids: Sequence[str], tenant: str | None = None) -> list[str]:
        """Cancel what has not finished: waiting operations become ``cancelled`` at once,
        running ones get ``cancel_requested``. Returns the ids of jobs that exist."""

    async def replay(self, flt: OpFilter) -> list[str]:
        """Move ``dead`` operations matching ``flt`` back to ``queued`` with zero attempts;
        returns their ids."""

    async def stats(self, tenant: str | None = None) -> list[QueueStats]:
        """Per-queue counts by state, oldest ready age and recent throughput: the
        operations that finished in the last minute and five minutes (and of those, the
        dead ones). SQLite and PostgreSQL count finishes as they happen, per 5-second
        slot, so those windows are 55-60 s and 295-300 s long and a read costs the same
        whatever the throughput; a replayed operation's finish stays counted."""

    async def ready_depths(self, cap: int) -> dict[str, int]:
        """``queued`` operations per queue (all tenants), each counted up to ``cap``: what
        backpressure compares with its thresholds every second. Reads at most ``cap``
        index entries per queue, never the whole table as :meth:`stats` does. Every queue
        with waiting operations (``scheduled``, ``queued``, ``retrying``) is in the
        result, with 0 if none is ``queued``."""

    # worker side -----------------------------------------------------------------------
    async def claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease_s: float
    ) -> list[Claim]:
        """Lease up to ``limit`` ready operations of ``queues`` (see ordering above)."""

    async def claim_ids(self, op_ids: Sequence[str], worker_id: str, lease_s: float) -> list[Claim]:
        """Lease the given operations if they are waiting and due (transports that deliver
        ids themselves, like Kafka, use this; the transport is responsible for order)."""

    async def extend_leases(self, leases: Sequence[Lease], lease_s: float) -> list[LeaseState]:
        """Heartbeat: extend the leases still held; report lost ones and cancel requests."""

    async def complete_many(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Record outcomes in one transaction; ``False`` where the lease was not current."""

    async def release(self, leases: Sequence[Lease]) -> int:
        """Give leases back without counting the attempt (graceful shutdown)."""

    async def rescue_expired(self, limit: int) -> list[str]:
        """Re-queue operations whose lease expired (``dead`` if attempts are spent).
        Safe to run from several processes at once."""

    # registry --------------------------------------------------------------------------
    async def upsert_tasks(self, tasks: Sequence[TaskInfo]) -> None: ...

    async def list_tasks(self) -> list[TaskInfo]: ...

    async def upsert_workers(self, workers: Sequence[WorkerInfo]) -> None:
        """Register or refresh workers; ``last_seen_at`` is set from the store's clock."""

    async def list_workers(self, include_gone: bool = False) -> list[WorkerInfo]:
        """Registered workers, live ones only unless ``include_gone``, by id."""

    async def expire_workers(self, timeout_s: float, forget_after_s: float) -> list[str]:
        """Mark ``gone`` the live workers not seen for ``timeout_s`` and expire the leases
        they hold (so the rescuer re-queues their operations at once); returns their ids.
        Gone workers not seen for ``forget_after_s`` are deleted (a worker that comes back
        registers again). Safe to run from several processes at once."""

    # API keys ----------------------------------------------------------------------------
    async def insert_keys(self, keys: Sequence[ApiKey]) -> None:
        """Store keys (only their hashes); ``created_at`` comes from the store's clock.
        Ids are unique: a duplicate id raises and stores none of the batch."""

    async def get_keys(self, ids: Sequence[str]) -> list[ApiKey]:
        """The keys with these ids that exist, revoked ones included, in any order."""

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key (of ``tenant`` when given), revoked ones included, oldest first."""

    async def revoke_keys(self, ids: Sequence[str]) -> list[str]:
        """Revoke the keys with these ids (``revoked_at`` from the store's clock); returns
        the ids that exist. Revoking twice keeps the first time. Idempotent."""


# The transactional outbox (Kafka tier) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One row of the outbox: an operation to carry to its queue's topic (``dispatch``)
    or to announce on its dead-letter topic (``dead``). ``payload`` is what the message
    says about the operation besides its id (``dead``: the operation as JSON)."""

    id: int
    op_id: str
    queue: str
    key: str | None
    kind: str
    headers: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivered:
    """What leasing operations delivered by a log gave: the claims, and the ids that
    were parked (waiting and due but held back by an earlier operation of their key:
    they re-enter the log later). Every other id was stale (finished, running elsewhere,
    not due) and needs nothing."""

    claims: list[Claim]
    parked: list[str]


@runtime_checkable
class OutboxStore(Protocol):
    """Store capability for log transports: the outbox written in the same transaction
    as every change that makes an operation ready (or dead), and leasing by id with the
    store's per-key order check.

    Guarantees: a row exists for every operation that became ready after
    :meth:`enable_outbox` (and for those waiting at that moment); a row is deleted only
    by :meth:`mark_published`; a claimed row not marked within ``lease_s`` is claimed
    again (a killed relay loses nothing; its duplicates are harmless because leases are
    fenced and stale deliveries are skipped)."""

    async def enable_outbox(self) -> None:
        """Start writing outbox rows (idempotent; also backfills waiting operations)."""

    async def claim_outbox(self, limit: int, lease_s: float) -> list[OutboxEntry]:
        """Up to ``limit`` due rows nobody is publishing, in publication order."""

    async def mark_published(self, ids: Sequence[int]) -> None:
        """The rows are durable in the log: delete them."""

    async def outbox_backlog(self) -> dict[str, int]:
        """Due rows not yet published, per queue."""

    async def next_outbox_due_s(self) -> float | None:
        """Seconds until the earliest row nobody is publishing falls due (0 when one is
        due now), by the store's clock; ``None`` when there is none. A relay that found
        nothing to claim waits this long at most, so a delayed row is published on time
        without a notification."""

    async def claim_delivered(self, op_ids: Sequence[str], worker_id: str, lease_s: float,
                              park_s: float) -> Delivered:
        """Lease the given operations if they are waiting, due and first of their key
        (like :meth:`Store.claim`); park the ones held back by their key (a new outbox
        row due in ``park_s``), in the same transaction."""

    async def reconcile_outbox(self, queue: str, older_than_s: float, limit: int) -> list[str]:
        """Give a new outbox row to operations of ``queue`` that have waited (due) for
        longer than ``older_than_s`` with none: their message was lost."""


@runtime_checkable
class OutboxSignal(Protocol):
    """Optional capability of an :class:`OutboxStore` (PostgreSQL: ``LISTEN/NOTIFY``):
    wait until outbox rows may have been written."""

    async def wait_outbox(self, timeout_s: float) -> None:
        """Return soon after outbox rows were written (by any process) since the previous
        call, at once if that happened already, or after ``timeout_s``, whichever is
        first. The first call returns at once. Never raises for a lost connection:
        waiting then lasts ``timeout_s`` (a wake-up may be missed, never a row)."""


@runtime_checkable
class OutboxCompaction(Protocol):
    """Optional capability of an :class:`OutboxStore` whose deleted rows keep costing
    (PostgreSQL: dead tuples that every claim walks past until a vacuum removes them):
    reclaim them now. The relay calls it, in the background, after it has deleted enough
    rows; it changes no row and no guarantee, and a store may skip it when busy."""

    async def compact_outbox(self) -> None:
        """Reclaim the space of the rows :meth:`OutboxStore.mark_published` deleted."""


@runtime_checkable
class ClaimsFirst(Protocol):
    """Optional capability (SQLite): every write of the process goes through one writer,
    and claims overtake the writes queued with them (they commit first, in a
    transaction of their own). A worker on such a store claims its next batch while two
    batches of outcomes await their record; on a store whose claims and outcomes run side
    by side (PostgreSQL) one batch awaiting its record is enough, and more would only
    split its claims into smaller ones."""

    claims_first: bool
