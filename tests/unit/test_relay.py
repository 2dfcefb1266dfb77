"""The relay's contract with the outbox: rows are marked published only after the
publisher confirmed the whole batch; a failed batch stays for the next attempt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import pytest

from conveyor.errors import TransportError
from conveyor.relay import Relay
from conveyor.store.base import Delivered, OutboxEntry
from conveyor.testing.contract_support import eventually


class FakeOutbox:
    """Just enough of :class:`OutboxStore` for the relay: claims with a lease."""

    def __init__(self, n: int) -> None:
        self.rows = {i: OutboxEntry(i, f"op{i}", "default", None, "dispatch")
                     for i in range(1, n + 1)}
        self.claimed: set[int] = set()

    async def claim_outbox(self, limit: int, lease_s: float) -> list[OutboxEntry]:
        free = [r for i, r in sorted(self.rows.items()) if i not in self.claimed][:limit]
        self.claimed.update(r.id for r in free)
        return free

    async def mark_published(self, ids: Sequence[int]) -> None:
        for i in ids:
            self.rows.pop(i)
            self.claimed.discard(i)

    def expire_claims(self) -> None:
        self.claimed.clear()

    def add(self, n: int) -> None:
        first = max(self.rows, default=0) + 1
        self.rows.update({i: OutboxEntry(i, f"op{i}", "default", None, "dispatch")
                          for i in range(first, first + n)})

    async def next_outbox_due_s(self) -> float | None:
        return None

    async def enable_outbox(self) -> None: ...
    async def outbox_backlog(self) -> dict[str, int]:
        return {"default": len(self.rows)}

    async def claim_delivered(self, op_ids: Sequence[str], worker_id: str, lease_s: float,
                              park_s: float) -> Delivered:
        return Delivered([], [])

    async def reconcile_outbox(self, queue: str, older_than_s: float, limit: int) -> list[str]:
        return []


class FakePublisher:
    def __init__(self, fail_batches: int = 0) -> None:
        self.fail_batches = fail_batches
        self.published: list[str] = []

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        self.published.extend(e.op_id for e in entries[: len(entries) // 2])
        if self.fail_batches:
            self.fail_batches -= 1
            raise TransportError("broker gone mid-batch")
        self.published.extend(e.op_id for e in entries[len(entries) // 2:])

    def close(self) -> None: ...


async def test_batches_are_marked_only_after_publication() -> None:
    outbox = FakeOutbox(5)
    publisher = FakePublisher()
    relay = Relay(outbox, publisher, batch=2)  # type: ignore[arg-type]
    assert [await relay.run_once() for _ in range(4)] == [2, 2, 1, 0]
    assert publisher.published == [f"op{i}" for i in range(1, 6)]
    assert outbox.rows == {}


async def test_a_failed_batch_is_published_again_after_its_lease() -> None:
    outbox = FakeOutbox(4)
    publisher = FakePublisher(fail_batches=1)
    relay = Relay(outbox, publisher, batch=4)  # type: ignore[arg-type]
    try:
        await relay.run_once()
        raise AssertionError("the failure must surface")
    except TransportError:
        pass
    assert len(outbox.rows) == 4, "nothing marked"
    assert await relay.run_once() == 0, "still claimed by the failed attempt"
    outbox.expire_claims()
    assert await relay.run_once() == 4
    assert outbox.rows == {}
    assert publisher.published == ["op1", "op2", "op1", "op2", "op3", "op4"]  # duplicates


async def test_run_survives_failures_and_stops_when_asked() -> None:
    outbox = FakeOutbox(3)
    publisher = FakePublisher(fail_batches=1)
    relay = Relay(outbox, publisher, batch=10, poll_s=0.01)  # type: ignore[arg-type]
    stopping = asyncio.Event()
    task = asyncio.create_task(relay.run(stopping))
    await asyncio.sleep(0.05)
    outbox.expire_claims()
    for _ in range(200):
        if not outbox.rows:
            break
        await asyncio.sleep(0.02)
    stopping.set()
    await asyncio.wait_for(task, 5)
    assert outbox.rows == {}


async def test_an_idle_relay_wakes_on_new_rows_and_when_a_delayed_row_falls_due() -> None:
    """With a 5 s fallback poll: a submission is published at once (the store's signal),
    a delayed row when due (the relay waits until the earliest due row), not before."""
    from conveyor.store.memory import MemoryOutboxStore
    from conveyor.testing.contract_support import insert, job, op

    store = MemoryOutboxStore()
    await store.open()
    await store.enable_outbox()
    publisher = FakePublisher()
    relay = Relay(store, publisher, poll_s=5.0)
    stopping = asyncio.Event()
    task = asyncio.create_task(relay.run(stopping))

    async def published_within(n: int, within_s: float) -> float:
        started = time.monotonic()
        while len(publisher.published) < n:
            assert time.monotonic() - started < within_s, publisher.published
            await asyncio.sleep(0.005)
        return time.monotonic() - started

    try:
        await asyncio.sleep(0.1)  # idle now, in a 5 s wait
        await insert(store, job("t.now"))
        assert await published_within(1, 0.2) < 0.2
        await insert(store, job(op("t.later", delay_s=0.5)))
        await asyncio.sleep(0.4)
        assert len(publisher.published) == 1, "not before it is due"
        assert await published_within(2, 0.4) < 0.4
    finally:
        stopping.set()
        await asyncio.wait_for(task, 5)
        await store.close()


class SubmittingPublisher(FakePublisher):
    """While its first batch is being published, a submission commits a row and wakes the
    relay, as ``conveyor api --relay`` does after each insert."""

    def __init__(self, outbox: FakeOutbox, relay: Callable[[], Relay]) -> None:
        super().__init__()
        self.outbox = outbox
        self.relay = relay

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        await super().publish(entries)
        if len(self.published) == 1:
            self.outbox.add(1)
            self.relay().wake()


async def test_a_wake_publishes_at_once_even_during_a_batch_without_a_signal() -> None:
    """A store without a signal and a 30 s fallback poll: rows committed in-process are
    published at once after :meth:`Relay.wake`, also when the wake comes while a batch is
    being published (the claim that follows sees the row)."""
    outbox = FakeOutbox(0)
    relay: Relay | None = None
    publisher = SubmittingPublisher(outbox, lambda: relay)  # type: ignore[arg-type,return-value]
    relay = Relay(outbox, publisher, poll_s=30.0)  # type: ignore[arg-type]
    stopping = asyncio.Event()
    task = asyncio.create_task(relay.run(stopping))
    try:
        await asyncio.sleep(0.1)  # idle, in a 30 s wait
        outbox.add(1)
        relay.wake()
        await until(lambda: publisher.published == ["op1", "op2"],
                    "both published without waiting for the poll")
        assert outbox.rows == {}
    finally:
        stopping.set()
        await asyncio.wait_for(task, 5)


async def until(condition: Callable[[], bool], what: str) -> None:
    async def probe() -> bool:
        return condition()

    await eventually(probe, timeout_s=2.0, interval_s=0.01, what=what)


class CompactingOutbox(FakeOutbox):
    """A store with :class:`OutboxCompaction`: each compaction waits until released."""

    def __init__(self, n: int, fail: bool = False) -> None:
        super().__init__(n)
        self.started = 0
        self.release = asyncio.Event()
        self.fail = fail

    async def compact_outbox(self) -> None:
        self.started += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("vacuum refused")


async def test_a_compaction_starts_once_caught_up_after_enough_rows_one_at_a_time() -> None:
    outbox = CompactingOutbox(12)
    relay = Relay(outbox, FakePublisher(), batch=5,  # type: ignore[arg-type]
                  compact_after_rows=4)
    assert [await relay.run_once() for _ in range(2)] == [5, 5]
    await asyncio.sleep(0)
    assert outbox.started == 0, "10 rows deleted, but still catching up"
    assert await relay.run_once() == 2
    await asyncio.sleep(0)
    assert outbox.started == 1, "caught up (a short batch)"
    outbox.add(10)  # published while the first compaction still runs
    assert [await relay.run_once() for _ in range(3)] == [5, 5, 0]
    await asyncio.sleep(0)
    assert outbox.started == 1, "never two at once"
    outbox.release.set()
    await asyncio.sleep(0)
    assert relay.compactions == 1
    assert await relay.run_once() == 0
    await asyncio.sleep(0)
    assert outbox.started == 2, "the 10 rows since the first began"
    await asyncio.sleep(0)
    assert relay.compactions == 2 and outbox.rows == {}
    assert await relay.run_once() == 0
    await asyncio.sleep(0)
    assert outbox.started == 2, "nothing deleted since"


async def test_a_failed_compaction_is_logged_and_the_relay_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    outbox = CompactingOutbox(6, fail=True)
    outbox.release.set()
    relay = Relay(outbox, FakePublisher(), batch=2, poll_s=0.01,  # type: ignore[arg-type]
                  compact_after_rows=2)
    stopping = asyncio.Event()
    task = asyncio.create_task(relay.run(stopping))
    await until(lambda: not outbox.rows, "every row published")
    stopping.set()
    await asyncio.wait_for(task, 5)
    assert outbox.started >= 1 and relay.compactions == 0
    assert "compacting the outbox failed: vacuum refused" in caplog.text


async def test_a_store_without_compaction_is_never_asked() -> None:
    outbox = FakeOutbox(6)
    relay = Relay(outbox, FakePublisher(), batch=4,  # type: ignore[arg-type]
                  compact_after_rows=1)
    assert [await relay.run_once() for _ in range(3)] == [4, 2, 0]
    assert relay.compactions == 0


class BlockingUpkeep:
    """Maintenance whose passes wait until released; the second and third fail."""

    def __init__(self) -> None:
        self.passes = 0
        self.release = asyncio.Event()

    async def run_once(self) -> None:
        self.passes += 1
        if self.passes == 2:
            raise TransportError("lag unknown")
        if self.passes == 3:
            raise KeyError("a bug")
        await self.release.wait()


async def test_upkeep_runs_beside_publication_and_a_failed_pass_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    outbox = FakeOutbox(0)
    publisher = FakePublisher()
    upkeep = BlockingUpkeep()
    relay = Relay(outbox, publisher, poll_s=0.01, maintenance=upkeep,  # type: ignore[arg-type]
                  maintenance_interval_s=0.02)
    stopping = asyncio.Event()
    task = asyncio.create_task(relay.run(stopping))
    try:
        await until(lambda: upkeep.passes == 1, "the first pass")  # held there
        outbox.add(3)
        await until(lambda: len(publisher.published) == 3, "publication beside upkeep")
        assert publisher.published == ["op1", "op2", "op3"]
        assert upkeep.passes == 1
        upkeep.release.set()
        await until(lambda: upkeep.passes >= 4, "the passes after failed ones, on time")
        assert "relay: upkeep failed: lag unknown" in caplog.text
        assert "KeyError: 'a bug'" in caplog.text, "logged with its traceback"
    finally:
        stopping.set()
        await asyncio.wait_for(task, 5)
