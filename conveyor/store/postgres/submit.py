"""Inserting jobs: one multi-row statement for the jobs, one for their operations.

The parameters are built by pure functions shared by the store (async, group commit) and
by transactional enqueue (:mod:`conveyor.postgres`, sync or async, the caller's own
connection), so both write exactly the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncCursor
from psycopg.rows import DictRow, dict_row

from ...model import NewJob, Submitted, new_ids, with_stored_jobs
from .. import rows
from .core import SQL, Conn, fetch, notify, rows_of


def _returning_rows(name: str) -> str:
    """The insert ``name`` giving its whole rows back, for a caller that wants its jobs
    as stored. The others do not pay for rows they would not read (decoding them costs
    ~5 µs per operation on each side in batches of 1,000)."""
    return SQL[name].removesuffix(";").removesuffix("RETURNING id").rstrip() + "\nRETURNING *;"


INSERT_JOBS_RETURNING = _returning_rows("insert_jobs")
INSERT_OPERATIONS_RETURNING = _returning_rows("insert_operations")
_IDS_OF_NEW_JOBS = "SELECT j.id FROM j, notified;"
assert SQL["insert_new_jobs"].endswith(_IDS_OF_NEW_JOBS)
INSERT_NEW_JOBS_RETURNING = SQL["insert_new_jobs"].removesuffix(_IDS_OF_NEW_JOBS) + (
    "SELECT o.*, j.status AS job_status, j.metadata AS job_metadata,\n"
    "       j.created_at AS job_created_at\n"
    "FROM o JOIN j ON j.id = o.job_id, notified;")
"""``insert_new_jobs`` answering the operations as stored, each with its job's columns."""


def dumps(value: Any) -> str:
    if value is None:  # most results: no encoder call
        return "null"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class DuplicateJobId(Exception):
    """A job id already exists (ids are random: a bug upstream, never a user error)."""


def job_params(jobs: Sequence[NewJob]) -> dict[str, Any]:
    return {
        "ids": [j.id for j in jobs],
        "tenants": [j.tenant for j in jobs],
        "queues": [j.queue for j in jobs],
        "metadata": [dumps(j.metadata) for j in jobs],
        "headers": [dumps(j.headers) for j in jobs],
        "idempotency_keys": [j.idempotency_key for j in jobs],
        "request_hashes": [j.request_hash for j in jobs],
    }


def idempotent_params(jobs: Sequence[NewJob]) -> dict[str, Any]:
    keyed = [j for j in jobs if j.idempotency_key is not None]
    return {"tenants": [j.tenant for j in keyed],
            "idempotency_keys": [j.idempotency_key for j in keyed]}


def operation_params(jobs: Sequence[NewJob]) -> dict[str, Any]:
    cols: dict[str, list[Any]] = {"ids": new_ids(sum(len(j.operations) for j in jobs))}
    cols.update({name: [] for name in (
        "job_ids", "tenants", "queues", "tasks", "args", "keys", "priorities",
        "max_attempts", "timeouts_s", "delays_s", "headers", "job_ops")})
    for j in jobs:
        headers = dumps(j.headers)
        job_ops = len(j.operations)
        for op in j.operations:
            cols["job_ids"].append(j.id)
            cols["tenants"].append(j.tenant)
            cols["queues"].append(j.queue)
            cols["tasks"].append(op.task)
            cols["args"].append(dumps(op.args))
            cols["keys"].append(op.key)
            cols["priorities"].append(op.priority)
            cols["max_attempts"].append(op.max_attempts)
            cols["timeouts_s"].append(op.timeout_s)
            cols["delays_s"].append(float(op.delay_s))
            cols["headers"].append(headers)
            cols["job_ops"].append(job_ops)
    return cols


def answers(
    jobs: Sequence[NewJob], created_ids: set[str], existing: Sequence[Any]
) -> tuple[list[Submitted], list[NewJob]]:
    """One answer per job in input order, and the jobs whose operations must be written.

    ``existing`` holds rows ``(id, tenant, idempotency_key, request_hash)`` of the jobs
    that own the idempotency keys of the batch. A key repeated inside the batch resolves
    to the batch's first job with it (the insert skipped the later ones)."""
    owners = {(r["tenant"], r["idempotency_key"]): r for r in existing}
    out: list[Submitted] = []
    written: list[NewJob] = []
    for j in jobs:
        owner = owners.get((j.tenant, j.idempotency_key)) if j.idempotency_key else None
        if j.id in created_ids and (owner is None or owner["id"] == j.id):
            out.append(Submitted(j.id, created=True))
            written.append(j)
            created_ids.discard(j.id)  # a repeated id in one batch is created once
        elif owner is not None:
            out.append(Submitted(str(owner["id"]), created=False,
                                 conflict=owner["request_hash"] != j.request_hash))
        else:
            raise DuplicateJobId(f"job id {j.id} already exists")
    return out, written


async def insert_jobs(conn: Conn, jobs: Sequence[NewJob], return_jobs: bool = False
                      ) -> list[Submitted]:
    """Insert ``jobs`` on ``conn`` inside the caller's transaction (see
    :func:`.submit.answers` for idempotency) and notify their queues at commit. With
    ``return_jobs``, each created job comes back as stored (``Submitted.job``), from the
    rows the inserts return: the same rows and conversion as
    :meth:`PostgresStore.get_jobs`, without reading them again.

    Jobs without an idempotency key are all new (their ids are random), so their
    operations are sent with them, before the jobs' insert is read: one round trip less
    (on a pipelined connection). A clash found then (an id that exists, a bug upstream)
    raises inside the caller's transaction, which undoes both inserts."""
    if any(j.idempotency_key for j in jobs):
        return await _insert_keyed(conn, jobs, return_jobs)
    async with conn.cursor(row_factory=dict_row) as jobs_cur, \
            conn.cursor(row_factory=dict_row) as ops_cur:
        await _send_jobs(jobs_cur, jobs, return_jobs)
        await _send_operations(conn, ops_cur, jobs, return_jobs)
        created = {str(r["id"]): r for r in await rows_of(jobs_cur)}
        out, written = answers(jobs, set(created), [])  # raises on a clash
        return await _with_jobs(out, created, written, ops_cur) if return_jobs else out


async def insert_new_jobs(conn: Conn, jobs: Sequence[NewJob], return_jobs: bool = False
                          ) -> list[Submitted]:
    """Insert ``jobs``, none with an idempotency key, in one statement on an autocommit
    ``conn``: committed, with the notification of their queues, when this returns. A
    clashing id raises :class:`psycopg.errors.UniqueViolation` and writes nothing
    (:func:`insert_jobs` in a transaction then tells which job clashed). With
    ``return_jobs``, each job comes back as stored (``Submitted.job``)."""
    params = {k: v for k, v in job_params(jobs).items() if k != "idempotency_keys"}
    for name, values in operation_params(jobs).items():
        params[_NEW_OPERATION_PARAMS.get(name, name)] = values
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(INSERT_NEW_JOBS_RETURNING if return_jobs
                          else SQL["insert_new_jobs"], params)
        found = await cur.fetchall()
    out = [Submitted(j.id, created=True) for j in jobs]
    if not return_jobs:
        return out
    job_rows = {r["job_id"]: {"id": r["job_id"], "queue": r["queue"], "tenant": r["tenant"],
                              "status": r["job_status"], "metadata": r["job_metadata"],
                              "created_at": r["job_created_at"], "idempotency_key": None}
                for r in found}
    stored = rows.jobs(job_rows.values(), found)
    return with_stored_jobs(out, {job.id: job for job in stored})


_NEW_OPERATION_PARAMS = {"ids": "op_ids", "tenants": "op_tenants", "queues": "op_queues",
                         "headers": "op_headers"}
"""insert_new_jobs' names of the operation parameters that share a name with a job's."""


async def _insert_keyed(conn: Conn, jobs: Sequence[NewJob], return_jobs: bool
                        ) -> list[Submitted]:
    """Jobs with idempotency keys: which ones are new decides which operations to write,
    so the jobs' insert is read first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await _send_jobs(cur, jobs, return_jobs)
        created = {str(r["id"]): r for r in await rows_of(cur)}
    keyed = idempotent_params(jobs)
    existing = await fetch(conn, "find_idempotent", keyed) if keyed["tenants"] else []
    out, written = answers(jobs, set(created), existing)
    if not written:
        return out
    async with conn.cursor(row_factory=dict_row) as cur:
        await _send_operations(conn, cur, written, return_jobs)
        return await _with_jobs(out, created, written, cur) if return_jobs else out


async def _send_jobs(cur: AsyncCursor[DictRow], jobs: Sequence[NewJob],
                     return_jobs: bool) -> None:
    """The jobs' insert on ``cur``: their whole rows returned when ``return_jobs``, else
    the ids of the created ones."""
    await cur.execute(INSERT_JOBS_RETURNING if return_jobs else SQL["insert_jobs"],
                      job_params(jobs))


async def _send_operations(conn: Conn, cur: AsyncCursor[DictRow], written: Sequence[NewJob],
                           return_jobs: bool) -> None:
    """The operations of ``written`` on ``cur`` (their rows returned when ``return_jobs``),
    and the notification of their queues at commit."""
    await cur.execute(INSERT_OPERATIONS_RETURNING if return_jobs
                      else SQL["insert_operations"], operation_params(written))
    await notify(conn, {j.queue for j in written})


async def _with_jobs(out: list[Submitted], created: dict[str, Any],
                     written: Sequence[NewJob], ops_cur: AsyncCursor[DictRow]
                     ) -> list[Submitted]:
    """``out`` with the created jobs, from the rows both inserts returned."""
    stored = rows.jobs([created[j.id] for j in written], await rows_of(ops_cur))
    return with_stored_jobs(out, {job.id: job for job in stored})


__all__ = ["SQL", "DuplicateJobId", "answers", "dumps", "idempotent_params", "insert_jobs",
           "insert_new_jobs", "job_params", "operation_params"]
