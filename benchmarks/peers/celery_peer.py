"""Celery with a Redis broker and the Redis result backend: prefork pool, ``acks_late``.

The worker imports this module (``celery -A benchmarks.peers.celery_peer worker``), so the
Redis URL comes from ``PEER_REDIS_URL``. Tasks return their own start and end times; the
result backend stores them with ``date_done`` (the time the outcome was stored).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import celery
import redis
from celery import Celery

from .harness import REPO, bench_redis_url, procstat

REDIS_URL = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/15")

app = Celery("conveyor_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_acks_late=True,                # ack after the task ran: a killed worker's task
    task_reject_on_worker_lost=True,    # is delivered again
    task_serializer="json", result_serializer="json", accept_content=["json"],
    broker_connection_retry_on_startup=True,
    result_expires=3600,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop() -> dict[str, float]:
    now = time.time()
    return {"s": now, "e": now}


@app.task(name="cpu")
def cpu(ms: float = 10.0) -> dict[str, float]:
    started = time.time()
    deadline = time.thread_time() + ms / 1000.0
    while time.thread_time() < deadline:
        pass
    return {"s": started, "e": time.time()}


def _iso(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Peer:
    name = "celery"
    version = celery.__version__
    durability = ("Redis broker and result backend without persistence (--save '' "
                  "--appendonly no): a Redis restart loses queued tasks and results; "
                  "acks_late: a killed worker's task runs again")

    def __init__(self, opts: Any) -> None:
        self.url = bench_redis_url(opts.redis or REDIS_URL)
        os.environ["PEER_REDIS_URL"] = self.url
        app.conf.broker_url = self.url
        app.conf.result_backend = self.url
        self.client = redis.Redis.from_url(self.url)
        self.settings = {"pool": "prefork", "acks_late": True, "prefetch_multiplier":
                         app.conf.worker_prefetch_multiplier, "broker": "redis",
                         "result_backend": "redis", "flags": "--without-mingle "
                         "--without-gossip"}
        self._sent: dict[str, float] = {}

    def service_pids(self) -> list[int]:
        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        pid = procstat.listening_pid(port)
        return [pid] if pid else []

    async def setup(self) -> None:
        self.client.flushdb()  # the benchmark's own Redis database only
        self._sent.clear()

    async def enqueue_many(self, task: str, args: dict[str, Any], n: int) -> list[str]:
        sig = app.signature(task, kwargs=args)
        ids = []
        for _ in range(n):
            ids.append(sig.apply_async().id)
        return ids

    async def submit(self, task: str, args: dict[str, Any]) -> str:
        sent = time.time()
        task_id = app.signature(task, kwargs=args).apply_async().id
        self._sent[task_id] = sent
        return task_id

    def start_workers(self, processes: int) -> list[subprocess.Popen[bytes]]:
        log = open(f"/tmp/conveyor-bench-celery-{os.getpid()}.log", "ab")  # noqa: SIM115
        return [subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "benchmarks.peers.celery_peer", "worker",
             "-P", "prefork", "-c", str(processes), "--loglevel", "WARNING",
             "--without-mingle", "--without-gossip"],
            cwd=REPO, env={**os.environ, "PEER_REDIS_URL": self.url}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)]

    def _metas(self, ids: list[str]) -> list[dict[str, Any] | None]:
        out: list[dict[str, Any] | None] = []
        for i in range(0, len(ids), 5000):
            chunk = ids[i:i + 5000]
            values = self.client.mget([f"celery-task-meta-{x}" for x in chunk])
            out.extend(json.loads(v) if v else None for v in values)
        return out

    async def finished(self, ids: list[str]) -> int:
        return sum(1 for m in self._metas(ids) if m and m.get("status") in ("SUCCESS",
                                                                            "FAILURE"))

    async def times(self, ids: list[str]) -> list[tuple[float | None, float | None,
                                                         float | None]]:
        out = []
        for task_id, meta in zip(ids, self._metas(ids), strict=True):
            result = (meta or {}).get("result") or {}
            out.append((self._sent.get(task_id), result.get("s"),
                        _iso((meta or {}).get("date_done")) or result.get("e")))
        return out

    async def close(self) -> None:
        self.client.close()
