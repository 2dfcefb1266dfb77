"""The memory store's registries: tasks, workers and API keys."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

from ...keys import ApiKey
from ...model import OpStatus, TaskInfo, WorkerInfo
from .core import MemoryCore
from .records import json_copy


class RegistryMixin(MemoryCore):
    """Tasks and workers as published, and API keys."""

    async def upsert_tasks(self, tasks: Sequence[TaskInfo]) -> None:
        async with self._lock:
            self._check_open()
            for info in tasks:
                self._tasks[info.name] = TaskInfo(
                    name=info.name, queue=info.queue, schema=json_copy(info.schema),
                    kind=info.kind, max_attempts=info.max_attempts, timeout_s=info.timeout_s,
                    priority=info.priority, doc=info.doc,
                )

    async def list_tasks(self) -> list[TaskInfo]:
        """By name."""
        async with self._lock:
            self._check_open()
            return [
                TaskInfo(t.name, t.queue, copy.deepcopy(t.schema), t.kind, t.max_attempts,
                         t.timeout_s, t.priority, t.doc)
                for _, t in sorted(self._tasks.items())
            ]

    async def upsert_workers(self, workers: Sequence[WorkerInfo]) -> None:
        async with self._lock:
            self._check_open()
            now = self._clock()
            for w in workers:
                self._workers[w.id] = dataclasses.replace(w, last_seen_at=now)

    async def list_workers(self, include_gone: bool = False) -> list[WorkerInfo]:
        async with self._lock:
            self._check_open()
            return [w for _, w in sorted(self._workers.items())
                    if include_gone or w.status == "live"]

    async def expire_workers(self, timeout_s: float, forget_after_s: float) -> list[str]:
        async with self._lock:
            self._check_open()
            now = self._clock()
            for old in [w.id for w in self._workers.values()
                        if w.status == "gone" and w.last_seen_at < now - forget_after_s]:
                del self._workers[old]
            gone = [w.id for w in self._workers.values()
                    if w.status == "live" and w.last_seen_at < now - timeout_s]
            for worker_id in gone:
                self._workers[worker_id] = dataclasses.replace(self._workers[worker_id],
                                                               status="gone")
            for op in self._ops.values():
                if op.status is OpStatus.RUNNING and op.worker_id in gone:
                    op.lease_expires_at = now - 0.001
            return sorted(gone)

    # API keys --------------------------------------------------------------------------
    async def insert_keys(self, keys: Sequence[ApiKey]) -> None:
        async with self._lock:
            self._check_open()
            ids = [k.id for k in keys]
            if len(set(ids)) != len(ids) or any(i in self._keys for i in ids):
                raise ValueError("an API key with this id already exists")
            now = self._clock()
            for k in keys:
                self._keys[k.id] = dataclasses.replace(k, created_at=now, revoked_at=None)

    async def get_keys(self, ids: Sequence[str]) -> list[ApiKey]:
        async with self._lock:
            self._check_open()
            return [self._keys[i] for i in dict.fromkeys(ids) if i in self._keys]

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        async with self._lock:
            self._check_open()
            return sorted((k for k in self._keys.values() if tenant in (None, k.tenant)),
                          key=lambda k: (k.created_at, k.id))

    async def revoke_keys(self, ids: Sequence[str]) -> list[str]:
        async with self._lock:
            self._check_open()
            now = self._clock()
            found = [i for i in dict.fromkeys(ids) if i in self._keys]
            for i in found:
                if self._keys[i].revoked_at is None:
                    self._keys[i] = dataclasses.replace(self._keys[i], revoked_at=now)
            return found

