"""Transactional enqueue on the PostgreSQL tier: a job exists if and only if the caller's
own transaction commits.

Write the business row and enqueue its follow-up work on the same psycopg connection::

    import psycopg
    from conveyor.postgres import enqueue

    with psycopg.connect(url) as conn:          # one transaction, committed at the end
        conn.execute("INSERT INTO orders (id, total) VALUES (%s, %s)", (order_id, total))
        enqueue(conn, "email.receipt", {"order_id": order_id}, key=f"order-{order_id}")

If the block raises, both the order and the job are rolled back; once it commits, both
are durable and a worker picks the job up (listening workers are notified at commit).
:func:`enqueue_async` does the same on a ``psycopg.AsyncConnection``.

The connection must reach the database a Conveyor deployment uses (``conveyor migrate``
applied, the same ``search_path``). The insert runs inside ``conn.transaction()``: a
savepoint inside the caller's open transaction, or a transaction of its own on an
autocommit connection (then the job is committed on return).

Validation is the API's: the task must be one that workers published (``conveyor
worker`` registers its tasks at start-up) and ``args`` must match its argument schema;
``ValidationError`` otherwise. Pass ``validate=False`` to enqueue a task no worker has
published yet (its defaults are then the built-in ones and ``args`` are not checked).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .config import Limits
from .errors import ValidationError
from .model import NewJob, Submitted, TaskInfo
from .store import rows
from .store.postgres import insert_jobs as _insert_async
from .store.postgres.submit import (
    SQL,
    answers,
    idempotent_params,
    job_params,
    operation_params,
)
from .submission import parse_job


def _body(task: str, args: Mapping[str, Any] | None, key: str | None, queue: str | None,
          priority: int | None, delay_s: float | None, max_attempts: int | None,
          timeout_s: float | None, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"task": task, "args": dict(args or {})}
    for name, value in (("key", key), ("queue", queue), ("priority", priority),
                        ("delay_s", delay_s), ("max_attempts", max_attempts),
                        ("timeout_s", timeout_s), ("metadata", metadata)):
        if value is not None:
            body[name] = dict(value) if isinstance(value, Mapping) else value
    return body


def _tasks(published: list[Any], task: str, validate: bool) -> dict[str, TaskInfo]:
    known = {info.name: info for info in (rows.task_info(r) for r in published)}
    if task not in known:
        if validate:
            raise ValidationError(
                f"unknown task {task!r}: no worker has published it (start a worker with "
                f"its module, or pass validate=False)")
        known[task] = TaskInfo(task, "default", {}, "async", 3, None, 0)
    elif not validate:
        info = known[task]
        known[task] = TaskInfo(info.name, info.queue, {}, info.kind, info.max_attempts,
                               info.timeout_s, info.priority, info.doc)
    return known


def _new_job(body: dict[str, Any], tasks: dict[str, TaskInfo], limits: Limits | None,
             tenant: str, idempotency_key: str | None) -> NewJob:
    return parse_job(body, tasks, limits or Limits(), tenant=tenant,
                     idempotency_key=idempotency_key)


def _job_id(answer: Submitted) -> str:
    if answer.conflict:
        from .errors import IdempotencyConflict

        raise IdempotencyConflict(
            "this idempotency key was already used with a different request")
    return answer.job_id


def enqueue(
    conn: psycopg.Connection[Any],
    task: str,
    args: Mapping[str, Any] | None = None,
    *,
    key: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    delay_s: float | None = None,
    max_attempts: int | None = None,
    timeout_s: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    tenant: str = "default",
    validate: bool = True,
    limits: Limits | None = None,
) -> str:
    """Insert one job (one operation of ``task``) on ``conn`` inside its transaction;
    returns the job id (the existing job's id for a repeated ``idempotency_key``)."""
    body = _body(task, args, key, queue, priority, delay_s, max_attempts, timeout_s, metadata)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        published = cur.execute(SQL["list_tasks"]).fetchall()
        new = _new_job(body, _tasks(published, task, validate), limits, tenant,
                       idempotency_key)
        created = {str(r["id"]) for r in cur.execute(SQL["insert_jobs"],
                                                     job_params([new])).fetchall()}
        existing: list[Any] = []
        if new.idempotency_key:
            existing = cur.execute(SQL["find_idempotent"], idempotent_params([new])).fetchall()
        out, written = answers([new], created, existing)
        if written:
            cur.execute(SQL["insert_operations"], operation_params(written))
            cur.execute(SQL["notify_ready"], {"queues": [new.queue]})
    return _job_id(out[0])


async def enqueue_async(
    conn: psycopg.AsyncConnection[Any],
    task: str,
    args: Mapping[str, Any] | None = None,
    *,
    key: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    delay_s: float | None = None,
    max_attempts: int | None = None,
    timeout_s: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    tenant: str = "default",
    validate: bool = True,
    limits: Limits | None = None,
) -> str:
    """:func:`enqueue` on an async connection."""
    body = _body(task, args, key, queue, priority, delay_s, max_attempts, timeout_s, metadata)
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(SQL["list_tasks"])
        published = await cur.fetchall()
        new = _new_job(body, _tasks(published, task, validate), limits, tenant,
                       idempotency_key)
        [answer] = await _insert_async(conn, [new])  # type: ignore[arg-type]
    return _job_id(answer)


__all__ = ["enqueue", "enqueue_async"]
