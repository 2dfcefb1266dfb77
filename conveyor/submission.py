"""Turning a submitted body into a :class:`~conveyor.model.NewJob`: shape, limits, schemas.

Pure code: it needs the known tasks (name -> :class:`~conveyor.model.TaskInfo`) and the
limits, and raises :class:`~conveyor.errors.ValidationError` listing every problem found.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from .config import Limits
from .errors import ValidationError
from .model import NewJob, NewOperation, TaskInfo, new_id
from .schema import validate
from .tasks import NAME_RE

OP_FIELDS = {"task", "args", "key", "priority", "delay_s", "max_attempts", "timeout_s"}
JOB_FIELDS = {"operations", "queue", "metadata"}


def request_hash(body: Any) -> str:
    """A fingerprint of a body, independent of key order (for idempotency checks)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of ``value``, counting at most to ``limit + 1`` (no recursion)."""
    return _shape(value, limit)[0]


_JSON_TYPES = frozenset({str, dict, list, int, float, bool, type(None)})
"""The types JSON decodes to."""


def _shape(value: Any, depth_limit: int) -> tuple[int, int]:
    """Nesting depth (counted at most to ``depth_limit + 1``) and the length of the longest
    string (keys included) of ``value``, in one walk without recursion."""
    deepest = longest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth > deepest:
            deepest = depth
            if deepest > depth_limit:
                break
        kind = type(item)
        if kind not in _JSON_TYPES:  # a subclass, from a caller in Python
            kind = next((base for base in (str, dict, list) if isinstance(item, base)), kind)
        if kind is str:
            if len(item) > longest:
                longest = len(item)
        elif kind is dict:
            for key, child in item.items():
                if isinstance(key, str) and len(key) > longest:
                    longest = len(key)
                push((child, depth + 1))
        elif kind is list:
            for child in item:
                push((child, depth + 1))
    return deepest, longest


_encode = json.JSONEncoder().encode
"""``json.dumps`` with its defaults, without building an encoder per call."""


def _json_size(value: dict[str, Any]) -> int:
    """Length of ``json.dumps(value)`` (the measure of the size limits)."""
    return 2 if not value else len(_encode(value))


def _number(
    op: Mapping[str, Any], name: str, default: float, low: float, high: float, where: str,
    problems: list[str], *, integer: bool = False,
) -> float:
    value = op.get(name, default)
    if value is None:
        return default
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        problems.append(f"{where}.{name}: expected {'integer' if integer else 'number'}")
        return default
    if not low <= value <= high:
        problems.append(f"{where}.{name}: must be between {low:g} and {high:g}")
        return default
    return float(value)


def _operation(
    raw: Any, where: str, tasks: Mapping[str, TaskInfo], limits: Limits, problems: list[str]
) -> NewOperation | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object")
        return None
    get = raw.get
    if not raw.keys() <= OP_FIELDS:
        for name in sorted(set(raw) - OP_FIELDS):
            problems.append(
                f"{where}.{name}: unknown field (allowed: {', '.join(sorted(OP_FIELDS))})")
    name = get("task")
    info = tasks.get(name) if isinstance(name, str) else None
    if not isinstance(name, str) or not name:
        problems.append(f"{where}.task: required, a task name")
    elif info is None:
        problems.append(f"{where}.task: unknown task {name!r}")
    args = get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        problems.append(f"{where}.args: expected an object of named arguments")
        args = {}
    elif args and _json_size(args) > limits.max_args_bytes:
        problems.append(f"{where}.args: larger than {limits.max_args_bytes} bytes")
    elif info is not None:
        problems.extend(validate(args, info.schema, f"{where}.args"))
    key = get("key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= limits.max_key_length):
        problems.append(
            f"{where}.key: expected a string of 1 to {limits.max_key_length} characters"
        )
        key = None
    # Omitted and null fields take the defaults (most submissions set none of them).
    priority: float = info.priority if info else 0
    if get("priority") is not None:
        priority = _number(raw, "priority", priority, -1000, 1000, where, problems, integer=True)
    delay_s = 0.0
    if get("delay_s") is not None:
        delay_s = _number(raw, "delay_s", 0.0, 0.0, limits.max_delay_s, where, problems)
    attempts: float = info.max_attempts if info else 3
    if get("max_attempts") is not None:
        attempts = _number(raw, "max_attempts", attempts, 1, limits.max_attempts_limit,
                           where, problems, integer=True)
    timeout = info.timeout_s if info else None
    if get("timeout_s") is not None:
        timeout = _number(raw, "timeout_s", timeout or 0.0, 0.001, limits.max_timeout_s,
                          where, problems)
    if info is None:
        return None
    return NewOperation(
        task=info.name, args=args, key=key, priority=int(priority), delay_s=float(delay_s),
        max_attempts=int(attempts), timeout_s=float(timeout) if timeout is not None else None,
    )


def parse_job(
    body: Any,
    tasks: Mapping[str, TaskInfo],
    limits: Limits,
    *,
    tenant: str = "default",
    idempotency_key: str | None = None,
    headers: Mapping[str, str] | None = None,
    job_id: str | None = None,
) -> NewJob:
    """Validate one job body (full or the one-operation shorthand) and apply defaults.
    The job gets ``job_id``, or a new id."""
    if not isinstance(body, dict):
        raise ValidationError("a job must be a JSON object")
    depth, longest = _shape(body, limits.max_json_depth)
    if depth > limits.max_json_depth:
        raise ValidationError(f"JSON nested deeper than {limits.max_json_depth} levels")
    if longest > limits.max_string_length:
        raise ValidationError(f"a string is longer than {limits.max_string_length} characters")
    problems: list[str] = []
    if "operations" in body:
        raw_ops = body["operations"]
        for name in sorted(set(body) - JOB_FIELDS):
            problems.append(f"{name}: unknown field (allowed: {', '.join(sorted(JOB_FIELDS))})")
    elif "task" in body:
        raw_ops = [body if JOB_FIELDS.isdisjoint(body) else
                   {k: v for k, v in body.items() if k not in JOB_FIELDS}]
    else:
        raise ValidationError("a job needs 'operations' (a list) or a 'task'")
    if not isinstance(raw_ops, list) or not raw_ops:
        raise ValidationError("operations: expected a non-empty list")
    if len(raw_ops) > limits.max_operations_per_job:
        raise ValidationError(f"operations: more than {limits.max_operations_per_job} in one job")
    ops = [_operation(raw, f"operations[{i}]", tasks, limits, problems)
           for i, raw in enumerate(raw_ops)]
    queue = body.get("queue")
    if queue is None:
        first_task = raw_ops[0].get("task") if isinstance(raw_ops[0], dict) else None
        first = tasks.get(first_task) if isinstance(first_task, str) else None
        queue = first.queue if first else "default"
    elif not isinstance(queue, str) or not NAME_RE.match(queue):
        problems.append("queue: 1-200 characters of letters, digits and _ . : -")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        problems.append("metadata: expected an object")
    elif _json_size(metadata) > limits.max_metadata_bytes:
        problems.append(f"metadata: larger than {limits.max_metadata_bytes} bytes")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 255:
        problems.append("Idempotency-Key: 1 to 255 characters")
    if problems:
        raise ValidationError(problems[0] if len(problems) == 1 else
                              f"{len(problems)} problems: " + "; ".join(problems[:5]),
                              errors=[{"detail": p} for p in problems])
    return NewJob(
        operations=tuple(op for op in ops if op is not None),
        queue=queue,
        metadata=metadata,
        tenant=tenant,
        idempotency_key=idempotency_key,
        request_hash=request_hash(body) if idempotency_key else None,
        headers=dict(headers or {}),
        id=job_id or new_id(),
    )
