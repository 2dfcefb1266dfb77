"""A process pool for ``def`` tasks with hard timeouts and interruption.

Unlike :class:`concurrent.futures.ProcessPoolExecutor`, each call is bound to one child
process, so a call that overruns its timeout, or is cancelled, can be stopped by killing
exactly that child; a fresh child replaces it. Children are started with ``spawn`` (no
inherited threads or locks) and load the same task modules as the worker.

Each child holds up to two calls: the one it runs and the next, already in its pipe, so it
starts the next call the moment it finishes one instead of waiting for this process to
read the reply and send more (on a busy event loop that gap costs a fixed share of every
call). A call is sent to the child with the fewest calls, an idle one first. The timeout
of a queued call counts from when it starts (when the reply ahead of it arrives). When a
child is killed (timeout, cancellation, death), calls queued behind the one it ran are
sent again to another child: they had not started.

A child counts as started only once it has loaded its task modules and said so: until
then it gets no call, so a fresh child's import time neither delays the calls already
running elsewhere nor counts against a call's timeout, and a worker does not lease work
its pool cannot run yet.

Only plain data crosses the pipe: the task name, JSON arguments, the context's fields,
and back either the JSON-encoded result or a :class:`~conveyor.retry.Failure`. Messages
are plain pickles (``send_bytes``), not multiprocessing's reducer-aware pickler, which
costs a dispatch-table copy per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from ..errors import TaskTimeout
from ..model import ErrorInfo
from ..retry import Failure, classify
from ..tasks import Context, Registry

_CTX = multiprocessing.get_context("spawn")
_READY = "ready"
"""The first message of a child: its task modules are loaded."""
CHILD_START_TIMEOUT_S = 60.0
"""A child that has not loaded its task modules by then is killed and counts as failed."""


class PoolTaskError(Exception):
    """A task failed inside a pool process; ``failure`` says how."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.error.message)
        self.failure = failure


def _dumps(message: object) -> bytes:
    return pickle.dumps(message, pickle.HIGHEST_PROTOCOL)


def _ctx_fields(ctx: Context) -> tuple[Any, ...]:
    """The context's fields in order (cheaper to pickle than the slotted dataclass)."""
    return (ctx.op_id, ctx.job_id, ctx.queue, ctx.key, ctx.attempt, ctx.max_attempts)


def _child_main(conn: multiprocessing.connection.Connection, modules: Sequence[str]) -> None:
    """Child loop: run one call at a time until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop
    registry = Registry.load(modules)
    try:
        conn.send_bytes(_dumps(_READY))
    except (EOFError, OSError):
        return
    while True:
        try:
            name, args, ctx_fields = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        ctx = Context(*ctx_fields)
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
            conn.send_bytes(_dumps(reply))
        except (EOFError, OSError):
            return


@dataclass(eq=False)
class _Call:
    name: str
    args: dict[str, Any]
    ctx: Context
    timeout_s: float | None
    future: asyncio.Future[tuple[str, Any]]
    timer: asyncio.TimerHandle | None = None
    abandoned: bool = False
    """The caller gave up (cancelled) after the call was sent: stop it when it starts."""


@dataclass(eq=False)
class _Child:
    process: BaseProcess
    conn: multiprocessing.connection.Connection
    calls: deque[_Call] = field(default_factory=deque)
    """Calls sent to this child, in order: the first one is running."""


class ProcessPool:
    """``size`` child processes, each running one call at a time (one more queued).

    Guarantees: a call runs in exactly one child; a call past ``timeout_s`` or cancelled
    kills its child (the pool replaces it), so no orphaned work keeps running; calls that
    were queued behind it run in another child.
    """

    depth = 2
    """Calls a child holds at once: the running one and the next."""

    def __init__(self, size: int, modules: Sequence[str] = ()) -> None:
        self.size = size
        self._modules = tuple(modules)
        self._children: list[_Child] = []
        self._pending: deque[_Call] = deque()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def _spawn(self) -> _Child:
        """A child that is ready for calls (blocking: run it off the event loop)."""
        return self._ready(self._launch())

    def _launch(self) -> _Child:
        parent, child = _CTX.Pipe()
        process = _CTX.Process(
            target=_child_main, args=(child, self._modules), daemon=True,
            name="conveyor-pool",
        )
        process.start()
        child.close()
        return _Child(process, parent)

    def _ready(self, child: _Child) -> _Child:
        """Wait until ``child`` has loaded its task modules; kill it if it fails to."""
        try:
            if (not child.conn.poll(CHILD_START_TIMEOUT_S)
                    or pickle.loads(child.conn.recv_bytes()) != _READY):
                raise OSError("no ready message")
        except (EOFError, OSError) as exc:
            self._kill(child)
            raise RuntimeError(f"a pool process did not start (exit code "
                               f"{child.process.exitcode}): {exc}") from exc
        return child

    def _adopt(self, child: _Child) -> None:
        assert self._loop is not None
        if self._closed:
            self._kill(child)
            return
        self._children.append(child)
        self._loop.add_reader(child.conn.fileno(), self._readable, child)
        self._pump()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        def start_all() -> list[_Child]:
            launched = [self._launch() for _ in range(self.size)]  # they load in parallel
            try:
                return [self._ready(c) for c in launched]
            except BaseException:
                for c in launched:
                    self._kill(c)
                raise

        children = await self._loop.run_in_executor(None, start_all)
        for child in children:
            self._adopt(child)

    @property
    def saturated(self) -> bool:
        """Calls are waiting for a child: the pool, not the worker, sets the pace."""
        return bool(self._pending)

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self._children if c.process.pid is not None]

    async def run(self, name: str, args: dict[str, Any], ctx: Context,
                  timeout_s: float | None) -> Any:
        """Run task ``name`` in a child; returns its (JSON-decoded) result.

        Raises :class:`PoolTaskError` for a task failure and
        :class:`~conveyor.errors.TaskTimeout` past ``timeout_s``."""
        loop = self._loop or asyncio.get_running_loop()
        call = _Call(name, args, ctx, timeout_s, loop.create_future())
        self._pending.append(call)
        self._pump()
        try:
            status, payload = await call.future
        except asyncio.CancelledError:
            self._abandon(call)
            raise
        if status == "ok":
            return json.loads(payload)
        raise PoolTaskError(payload)

    # dispatch ------------------------------------------------------------------------
    def _pump(self) -> None:
        """Send pending calls to the children with room, the least busy first."""
        while self._pending and self._children:
            child = min(self._children, key=lambda c: len(c.calls))
            if len(child.calls) >= self.depth:
                return
            call = self._pending.popleft()
            try:
                child.conn.send_bytes(_dumps((call.name, call.args, _ctx_fields(call.ctx))))
            except (OSError, ValueError):  # the child is gone: its reader handles it
                self._pending.appendleft(call)
                self._lost(child)
                continue
            child.calls.append(call)
            if len(child.calls) == 1:
                self._started(call)

    def _started(self, call: _Call) -> None:
        """``call`` is now running in its child: arm its timeout."""
        if call.timeout_s is not None and self._loop is not None:
            call.timer = self._loop.call_later(call.timeout_s, self._expired, call)

    def _readable(self, child: _Child) -> None:
        try:
            reply = pickle.loads(child.conn.recv_bytes())
        except (EOFError, OSError):
            self._lost(child)
            return
        if not child.calls:  # a reply nobody waits for: cannot happen; stay safe
            return
        call = child.calls.popleft()
        if call.timer is not None:
            call.timer.cancel()
        if not call.future.done():
            call.future.set_result(reply)
        if child.calls:
            head = child.calls[0]
            if head.abandoned:  # it has just started: stop it now
                self._retire(child)
            else:
                self._started(head)
        self._pump()

    def _expired(self, call: _Call) -> None:
        for child in self._children:
            if child.calls and child.calls[0] is call:
                if not call.future.done():
                    call.future.set_exception(TaskTimeout(
                        f"{call.name} ran past its timeout of {call.timeout_s:g} s"))
                self._retire(child)
                return

    def _abandon(self, call: _Call) -> None:
        """The caller was cancelled: a call not sent is dropped, a running one is stopped
        with its child, a queued one is stopped when it starts."""
        if call.timer is not None:
            call.timer.cancel()
        try:
            self._pending.remove(call)
            return
        except ValueError:
            pass
        for child in self._children:
            if call in child.calls:
                if child.calls[0] is call:
                    self._retire(child)
                else:
                    call.abandoned = True
                return

    def _lost(self, child: _Child) -> None:
        """The child died: its running call fails, the calls queued behind it run again."""
        if child.calls:
            call = child.calls[0]
            if not call.future.done():
                call.future.set_exception(PoolTaskError(Failure(ErrorInfo(
                    "WorkerProcessDied",
                    f"the pool process running {call.name} exited "
                    f"(code {child.process.exitcode})",
                ))))
        self._retire(child)

    def _retire(self, child: _Child) -> None:
        """Kill ``child`` (its running call has been answered or abandoned), send the calls
        queued behind it again, and start a replacement."""
        if child not in self._children:
            return
        self._children.remove(child)
        assert self._loop is not None
        self._loop.remove_reader(child.conn.fileno())
        running, queued = (child.calls[0], list(child.calls)[1:]) if child.calls else (None, [])
        child.calls.clear()
        if running is not None and running.timer is not None:
            running.timer.cancel()
        if running is not None and not running.future.done():  # abandoned by its caller
            running.future.cancel()
        self._pending.extendleft(reversed([c for c in queued if not c.future.done()]))
        self._kill(child)
        if not self._closed:
            task = self._loop.run_in_executor(None, self._spawn)
            task.add_done_callback(self._replaced)
        self._pump()

    def _replaced(self, done: asyncio.Future[_Child]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        self._adopt(done.result())

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
        children, self._children = list(self._children), []
        for child in children:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(child.conn.fileno())
            for call in child.calls:
                if not call.future.done():
                    call.future.cancel()
            with contextlib.suppress(OSError):
                child.conn.close()
        for call in self._pending:
            if not call.future.done():
                call.future.cancel()
        self._pending.clear()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: [self._stop(c) for c in children])

    @staticmethod
    def _stop(child: _Child) -> None:
        child.process.join(timeout=2)
        if child.process.is_alive():
            child.process.kill()
            child.process.join(timeout=5)
