"""Service.submit answers with the job as its insert stored it (no second read), and an
idempotent repeat with the original job (read back, since nothing was inserted)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from conveyor.config import Limits
from conveyor.errors import IdempotencyConflict, ValidationError
from conveyor.model import Job, JobStatus, OpStatus, TaskInfo
from conveyor.service import Service, TaskCatalog
from conveyor.store.memory import MemoryStore


class CountingStore(MemoryStore):
    """Counts the job reads."""

    def __init__(self) -> None:
        super().__init__()
        self.job_reads = 0

    async def get_jobs(self, ids: Sequence[str], tenant: str | None = None) -> list[Job]:
        self.job_reads += 1
        return await super().get_jobs(ids, tenant)


async def _service() -> tuple[Service, CountingStore]:
    store = CountingStore()
    await store.upsert_tasks([TaskInfo("t.echo", "default", {}, "async", 3, None, 0)])
    return Service(store, TaskCatalog(store, None), Limits()), store


async def test_a_new_job_is_answered_without_reading_it_back() -> None:
    service, store = await _service()
    job, created = await service.submit(
        {"task": "t.echo", "args": {"x": 1}, "delay_s": 5}, tenant="acme")
    assert created is True
    assert store.job_reads == 0
    assert job == await service.get(job.id, "acme")
    assert (job.status, job.tenant, job.operations[0].status, job.operations[0].args) == (
        JobStatus.QUEUED, "acme", OpStatus.SCHEDULED, {"x": 1})


async def test_an_idempotent_repeat_answers_the_original_job() -> None:
    service, store = await _service()
    body = {"task": "t.echo", "args": {"x": 1}}
    first, created = await service.submit(body, idempotency_key="k")
    again, created_again = await service.submit(body, idempotency_key="k")
    assert (created, created_again) == (True, False)
    assert again == first
    assert store.job_reads == 1  # only the repeat reads the stored job
    with pytest.raises(IdempotencyConflict):
        await service.submit({"task": "t.echo", "args": {"x": 2}}, idempotency_key="k")


async def test_parse_many_validates_a_batch_without_storing_it() -> None:
    service, store = await _service()
    jobs = await service.parse_many([{"task": "t.echo", "args": {"x": i}} for i in range(3)],
                                    tenant="acme", headers={"traceparent": "00-ab"})
    assert [job.operations[0].args for job in jobs] == [{"x": 0}, {"x": 1}, {"x": 2}]
    assert len({job.id for job in jobs}) == 3
    assert {(job.tenant, job.headers["traceparent"]) for job in jobs} == {("acme", "00-ab")}
    assert await store.get_jobs([job.id for job in jobs]) == []  # nothing stored
    with pytest.raises(ValidationError, match=r"^jobs\[1\]: "):
        await service.parse_many([{"task": "t.echo"}, {"task": "t.nope"}])
    with pytest.raises(ValidationError, match="non-empty"):
        await service.parse_many([])
