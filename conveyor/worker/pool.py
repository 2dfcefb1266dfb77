"""A process pool for ``def`` tasks with hard timeouts and interruption.

Unlike :class:`concurrent.futures.ProcessPoolExecutor`, each call is bound to one child
process, so a call that overruns its timeout, or is cancelled, can be stopped by killing
exactly that child; a fresh child replaces it. Children are started with ``spawn`` (no
inherited threads or locks) and load the same task modules as the worker.

Only plain data crosses the pipe: the task name, JSON arguments, the context, and back
either the JSON-encoded result or a :class:`~conveyor.retry.Failure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from ..errors import TaskTimeout
from ..model import ErrorInfo
from ..retry import Failure, classify
from ..tasks import Context, Registry

_CTX = multiprocessing.get_context("spawn")


class PoolTaskError(Exception):
    """A task failed inside a pool process; ``failure`` says how."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.error.message)
        self.failure = failure


def _child_main(conn: multiprocessing.connection.Connection, modules: Sequence[str]) -> None:
    """Child loop: run one call at a time until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop
    registry = Registry.load(modules)
    while True:
        try:
            name, args, ctx = conn.recv()
        except (EOFError, OSError):
            return
        spec = registry.get(name)
        try:
            if spec is None:
                raise LookupError(f"task {name!r} is not loaded in the pool process")
            kwargs = dict(args)
            if spec.context_param:
                kwargs[spec.context_param] = ctx
            payload = json.dumps(spec.fn(**kwargs))
            reply: tuple[str, Any] = ("ok", payload)
        except BaseException as exc:
            permanent = spec.options.permanent if spec else ()
            if isinstance(exc, (TypeError, ValueError)) and "JSON serializable" in str(exc):
                exc = TypeError(f"the result of {name} is not JSON serializable: {exc}")
                permanent = (TypeError,)
            reply = ("err", classify(exc, permanent))
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


@dataclass(eq=False)
class _Child:
    process: BaseProcess
    conn: multiprocessing.connection.Connection


class ProcessPool:
    """``size`` child processes, each running one call at a time.

    Guarantees: a call runs in exactly one child; a call past ``timeout_s`` or cancelled
    kills its child (the pool replaces it), so no orphaned work keeps running.
    """

    def __init__(self, size: int, modules: Sequence[str] = ()) -> None:
        self.size = size
        self._modules = tuple(modules)
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._all: set[_Child] = set()
        self._closed = False

    def _spawn(self) -> _Child:
        parent, child = _CTX.Pipe()
        process = _CTX.Process(
            target=_child_main, args=(child, self._modules), daemon=True,
            name="conveyor-pool",
        )
        process.start()
        child.close()
        entry = _Child(process, parent)
        self._all.add(entry)
        return entry

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        children = await loop.run_in_executor(
            None, lambda: [self._spawn() for _ in range(self.size)]
        )
        for child in children:
            self._idle.put_nowait(child)

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self._all if c.process.pid is not None]

    async def run(self, name: str, args: dict[str, Any], ctx: Context,
                  timeout_s: float | None) -> Any:
        """Run task ``name`` in a child; returns its (JSON-decoded) result.

        Raises :class:`PoolTaskError` for a task failure and
        :class:`~conveyor.errors.TaskTimeout` past ``timeout_s``."""
        child = await self._idle.get()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        fd = child.conn.fileno()

        def readable() -> None:
            if not done.done():
                done.set_result(None)

        def expired() -> None:
            if not done.done():
                done.set_exception(TimeoutError())

        # One future woken by the pipe or by a timer: no extra task per call, as
        # asyncio.wait_for would create.
        timer = loop.call_later(timeout_s, expired) if timeout_s is not None else None
        loop.add_reader(fd, readable)
        healthy = False
        try:
            child.conn.send((name, args, ctx))
            try:
                await done
            except TimeoutError:
                raise TaskTimeout(f"{name} ran past its timeout of {timeout_s:g} s") from None
            try:
                status, payload = child.conn.recv()
            except (EOFError, OSError):
                raise PoolTaskError(Failure(ErrorInfo(
                    "WorkerProcessDied",
                    f"the pool process running {name} exited (code {child.process.exitcode})",
                ))) from None
            healthy = True
        finally:
            if timer is not None:
                timer.cancel()
            loop.remove_reader(fd)
            if healthy:
                self._idle.put_nowait(child)
            else:  # timed out, cancelled or died: stop it and put a fresh child in its place
                await self._replace(child)
        if status == "ok":
            return json.loads(payload)
        raise PoolTaskError(payload)

    async def _replace(self, child: _Child) -> None:
        self._all.discard(child)
        self._kill(child)
        if not self._closed:
            loop = asyncio.get_running_loop()
            self._idle.put_nowait(await loop.run_in_executor(None, self._spawn))

    @staticmethod
    def _kill(child: _Child) -> None:
        if child.process.is_alive() and child.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGKILL)
        child.process.join(timeout=5)
        child.conn.close()

    async def close(self) -> None:
        """Stop every child (running calls are abandoned; their leases handle the rest)."""
        self._closed = True
        children, self._all = list(self._all), set()
        for child in children:
            with contextlib.suppress(OSError):
                child.conn.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: [self._stop(c) for c in children])

    @staticmethod
    def _stop(child: _Child) -> None:
        child.process.join(timeout=2)
        if child.process.is_alive():
            child.process.kill()
            child.process.join(timeout=5)
