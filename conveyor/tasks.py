"""Tasks: the ``@task`` decorator, the context a task may ask for, and the registry.

``@task`` only marks a function (it stays an ordinary callable); a :class:`Registry`
collects marked functions from the modules it loads. There is no global registry, so two
workers in one process, or a test, can load different task sets.

``def`` tasks run on the worker's process pool (CPU-bound work, one process per core by
default); ``async def`` tasks run on the worker's event loop (I/O-bound work).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from .errors import ConfigError
from .model import TaskInfo
from .schema import function_schema

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}$")
"""Allowed task and queue names: letters, digits, ``_ . : -``; at most 200 characters."""

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__conveyor_task__"


@dataclass(frozen=True, slots=True)
class Context:
    """What a task may learn about the attempt it runs in (declare a ``ctx: Context``).

    ``op_id`` is stable across attempts: use it as the idempotency key of side effects.
    """

    op_id: str
    job_id: str
    queue: str
    key: str | None
    attempt: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class TaskOptions:
    name: str | None = None
    queue: str = "default"
    max_attempts: int = 3
    timeout_s: float | None = None
    priority: int = 0
    permanent: tuple[type[BaseException], ...] = ()


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its function, options, and derived facts."""

    name: str
    fn: Callable[..., Any]
    options: TaskOptions
    is_async: bool
    context_param: str | None
    schema: dict[str, Any] = field(default_factory=dict)

    def info(self) -> TaskInfo:
        return TaskInfo(
            name=self.name,
            queue=self.options.queue,
            schema=self.schema,
            kind="async" if self.is_async else "process",
            max_attempts=self.options.max_attempts,
            timeout_s=self.options.timeout_s,
            priority=self.options.priority,
            doc=inspect.getdoc(self.fn) or "",
        )


@overload
def task(fn: F) -> F: ...
@overload
def task(
    fn: None = None,
    *,
    name: str | None = None,
    queue: str = "default",
    max_attempts: int = 3,
    timeout_s: float | None = None,
    priority: int = 0,
    permanent: Sequence[type[BaseException]] = (),
) -> Callable[[F], F]: ...
def task(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    queue: str = "default",
    max_attempts: int = 3,
    timeout_s: float | None = None,
    priority: int = 0,
    permanent: Sequence[type[BaseException]] = (),
) -> Any:
    """Mark a function as a Conveyor task.

    ``name`` defaults to ``module.function``; ``permanent`` lists exception types that
    send the operation to ``dead`` without retrying (``conveyor.Fail`` always does).
    """
    if max_attempts < 1:
        raise ConfigError("max_attempts must be at least 1")
    options = TaskOptions(name, queue, max_attempts, timeout_s, priority, tuple(permanent))

    def mark(f: F) -> F:
        setattr(f, _MARK, options)
        return f

    return mark(fn) if fn is not None else mark


def spec_of(fn: Callable[..., Any]) -> TaskSpec | None:
    """The spec of a function marked with ``@task``, or None."""
    options: TaskOptions | None = getattr(fn, _MARK, None)
    if options is None:
        return None
    name = options.name or f"{fn.__module__}.{fn.__name__}"
    if not NAME_RE.match(name):
        raise ConfigError(f"task name {name!r} is not allowed (letters, digits, _ . : -)")
    context_param = next(
        (
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.annotation in (Context, "Context") or p.name == "ctx"
        ),
        None,
    )
    skip = frozenset({context_param}) if context_param else frozenset()
    return TaskSpec(
        name=name,
        fn=fn,
        options=options,
        is_async=inspect.iscoroutinefunction(fn),
        context_param=context_param,
        schema=function_schema(fn, skip),
    )


class Registry:
    """The tasks one process knows, by name. Built from modules, never global."""

    BUILTIN_MODULE = "conveyor.builtin_tasks"

    def __init__(self, specs: Iterable[TaskSpec] = ()) -> None:
        self._specs: dict[str, TaskSpec] = {}
        for spec in specs:
            self.add(spec)

    @classmethod
    def load(cls, modules: Sequence[str] = (), *, builtin: bool = True) -> Registry:
        """Import ``modules`` (and the built-in tasks) and register every marked function."""
        registry = cls()
        names = ([cls.BUILTIN_MODULE] if builtin else []) + list(modules)
        for module_name in names:
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise ConfigError(f"cannot import task module {module_name!r}: {exc}") from exc
            for value in vars(module).values():
                spec = spec_of(value) if callable(value) else None
                if spec is not None:
                    registry.add(spec)
        return registry

    def add(self, spec: TaskSpec) -> None:
        existing = self._specs.get(spec.name)
        if existing is not None and existing.fn is not spec.fn:
            raise ConfigError(f"two functions are registered as task {spec.name!r}")
        self._specs[spec.name] = spec

    def get(self, name: str) -> TaskSpec | None:
        return self._specs.get(name)

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def infos(self) -> list[TaskInfo]:
        return [spec.info() for spec in self._specs.values()]

    def queues(self) -> list[str]:
        return sorted({spec.options.queue for spec in self._specs.values()})
