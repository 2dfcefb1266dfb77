"""Dramatiq with the Redis broker and the Results middleware (Redis result backend).

The worker imports this module (``dramatiq benchmarks.peers.dramatiq_peer -p N``), so the
Redis URL comes from ``PEER_REDIS_URL``. Actors return their own start and end times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from .harness import REPO, bench_redis_url, procstat

REDIS_URL = bench_redis_url(os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/15"))

broker = RedisBroker(url=REDIS_URL)
backend = RedisBackend(url=REDIS_URL)
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, queue_name="bench", max_retries=3)
def noop() -> dict[str, float]:
    now = time.time()
    return {"s": now, "e": now}


@dramatiq.actor(store_results=True, queue_name="bench", max_retries=3)
def cpu(ms: float = 10.0) -> dict[str, float]:
    started = time.time()
    deadline = time.thread_time() + ms / 1000.0
    while time.thread_time() < deadline:
        pass
    return {"s": started, "e": time.time()}


ACTORS = {"noop": noop, "cpu": cpu}


class Peer:
    name = "dramatiq"
    version = dramatiq.__version__
    durability = ("Redis broker and result backend without persistence (--save '' "
                  "--appendonly no): a Redis restart loses queued messages and results; "
                  "messages are acked after processing: a killed worker's messages are "
                  "requeued")

    def __init__(self, opts: Any) -> None:
        self.url = bench_redis_url(opts.redis or REDIS_URL)
        if self.url != REDIS_URL:
            raise SystemExit("set PEER_REDIS_URL (the module binds its broker at import)")
        self.client = redis.Redis.from_url(self.url)
        self.settings = {"broker": "redis", "results": "RedisBackend",
                         "threads_per_process": 8}
        self._sent: dict[str, float] = {}

    def service_pids(self) -> list[int]:
        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        pid = procstat.listening_pid(port)
        return [pid] if pid else []

    async def setup(self) -> None:
        self.client.flushdb()  # the benchmark's own Redis database only
        self._sent.clear()

    async def enqueue_many(self, task: str, args: dict[str, Any], n: int) -> list[Any]:
        actor = ACTORS[task]
        return [actor.send(**args) for _ in range(n)]

    async def submit(self, task: str, args: dict[str, Any]) -> Any:
        sent = time.time()
        message = ACTORS[task].send(**args)
        self._sent[message.message_id] = sent
        return message

    def start_workers(self, processes: int) -> list[subprocess.Popen[bytes]]:
        log = open(f"/tmp/conveyor-bench-dramatiq-{os.getpid()}.log", "ab")  # noqa: SIM115
        return [subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "benchmarks.peers.dramatiq_peer",
             "-p", str(processes), "-Q", "bench"],
            cwd=REPO, env={**os.environ, "PEER_REDIS_URL": self.url}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)]

    def _values(self, messages: list[Any]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(messages), 5000):
            pipe = self.client.pipeline(transaction=False)
            for m in messages[i:i + 5000]:
                pipe.lindex(backend.build_message_key(m), 0)
            out.extend(json.loads(v) if v else None for v in pipe.execute())
        return out

    async def finished(self, messages: list[Any]) -> int:
        return sum(1 for v in self._values(messages) if v is not None)

    async def times(self, messages: list[Any]) -> list[tuple[float | None, float | None,
                                                              float | None]]:
        out = []
        for m, value in zip(messages, self._values(messages), strict=True):
            v = value if isinstance(value, dict) else {}
            out.append((self._sent.get(m.message_id), v.get("s"), v.get("e")))
        return out

    async def close(self) -> None:
        self.client.close()
