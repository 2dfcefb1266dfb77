"""Submission parsing: body shapes, task defaults, argument schemas, limits, and the
request hash used for idempotency. Every rejection is a ``ValidationError`` naming where."""

from __future__ import annotations

import collections
from typing import Any

import pytest

from conveyor.config import Limits
from conveyor.errors import ValidationError
from conveyor.model import NewOperation, TaskInfo
from conveyor.schema import function_schema
from conveyor.submission import json_depth, parse_job, request_hash


def _add(a: int, b: int = 0) -> int:
    return a + b


def _echo(**values: Any) -> None:
    pass


TASKS = {
    "math.add": TaskInfo("math.add", "math", function_schema(_add), "process", 5, None, 3),
    "sys.echo": TaskInfo("sys.echo", "default", function_schema(_echo), "async", 2, None, 0),
    "sys.slow": TaskInfo("sys.slow", "slow", {}, "async", 3, 30.0, 0),
}
LIMITS = Limits()


def parse(body: Any, limits: Limits = LIMITS, **kw: Any) -> Any:
    return parse_job(body, TASKS, limits, **kw)


def problems(body: Any, limits: Limits = LIMITS, **kw: Any) -> list[str]:
    """Every problem reported for ``body`` (the body must be rejected)."""
    with pytest.raises(ValidationError) as info:
        parse(body, limits, **kw)
    return [str(e["detail"]) for e in info.value.errors] or [str(info.value)]


def one_problem(body: Any, limits: Limits = LIMITS, **kw: Any) -> str:
    found = problems(body, limits, **kw)
    assert len(found) == 1, found
    return found[0]


# shapes and defaults -------------------------------------------------------------------
def test_shorthand_takes_defaults_from_the_task() -> None:
    job = parse({"task": "math.add", "args": {"a": 1, "b": 2}})
    assert job.queue == "math"
    assert job.operations == (
        NewOperation("math.add", {"a": 1, "b": 2}, key=None, priority=3, delay_s=0.0,
                     max_attempts=5, timeout_s=None),
    )
    assert (job.metadata, job.tenant, job.idempotency_key, job.request_hash) == (
        {}, "default", None, None)


def test_shorthand_with_every_field() -> None:
    job = parse({"task": "math.add", "args": {"a": 1}, "key": "user-7", "priority": -4,
                 "delay_s": 2.5, "max_attempts": 9, "timeout_s": 1.5, "queue": "other",
                 "metadata": {"m": 1}})
    assert job.queue == "other"
    assert job.metadata == {"m": 1}
    assert job.operations == (
        NewOperation("math.add", {"a": 1}, key="user-7", priority=-4, delay_s=2.5,
                     max_attempts=9, timeout_s=1.5),
    )


def test_full_form_keeps_operation_order() -> None:
    job = parse({"operations": [{"task": "sys.echo", "args": {"x": [1]}},
                                {"task": "math.add", "args": {"a": 2}},
                                {"task": "sys.echo"}],
                 "queue": "q.1", "metadata": {"who": "me"}},
                tenant="acme", headers={"traceparent": "t"})
    assert [o.task for o in job.operations] == ["sys.echo", "math.add", "sys.echo"]
    assert job.operations[0].args == {"x": [1]}
    assert job.operations[2].args == {}
    assert (job.queue, job.metadata, job.tenant, job.headers) == (
        "q.1", {"who": "me"}, "acme", {"traceparent": "t"})


def test_queue_defaults_to_the_first_tasks_queue() -> None:
    job = parse({"operations": [{"task": "sys.echo"}, {"task": "math.add", "args": {"a": 1}}]})
    assert job.queue == "default"
    assert parse({"operations": [{"task": "math.add", "args": {"a": 1}}]}).queue == "math"


def test_null_fields_mean_defaults() -> None:
    job = parse({"task": "math.add", "args": {"a": 1}, "priority": None, "delay_s": None,
                 "max_attempts": None, "key": None, "metadata": None})
    op = job.operations[0]
    assert (op.priority, op.delay_s, op.max_attempts, op.key) == (3, 0.0, 5, None)
    assert parse({"task": "sys.echo", "args": None}).operations[0].args == {}


def test_task_default_timeout_applies() -> None:
    assert parse({"task": "sys.slow"}).operations[0].timeout_s == 30.0


def test_explicit_timeout_overrides_task_default() -> None:
    assert parse({"task": "sys.slow", "timeout_s": 5}).operations[0].timeout_s == 5.0


# tasks and arguments -------------------------------------------------------------------
def test_unknown_task() -> None:
    assert one_problem({"task": "no.such"}) == "operations[0].task: unknown task 'no.such'"


@pytest.mark.parametrize("task", ["", 5, None])
def test_task_name_required(task: Any) -> None:
    assert one_problem({"operations": [{"task": task}]}) == (
        "operations[0].task: required, a task name")


def test_arguments_are_checked_against_the_schema() -> None:
    assert problems({"task": "math.add", "args": {"a": "1", "c": 2}}) == [
        "operations[0].args.a: expected integer, got string",
        "operations[0].args.c: unknown argument (allowed: a, b)",
    ]
    assert one_problem({"task": "math.add"}) == (
        "operations[0].args.a: required argument is missing")
    assert one_problem({"task": "math.add", "args": [1, 2]}) == (
        "operations[0].args: expected an object of named arguments")


def test_unknown_fields() -> None:
    assert one_problem({"task": "sys.echo", "retries": 3}).startswith(
        "operations[0].retries: unknown field")
    assert one_problem({"operations": [{"task": "sys.echo"}], "priority": 1}).startswith(
        "priority: unknown field (allowed: metadata, operations, queue)")


def test_every_problem_is_reported() -> None:
    with pytest.raises(ValidationError) as info:
        parse({"operations": [{"task": "no.such"}, {"task": "math.add", "args": {}},
                              {"task": "sys.echo", "priority": 5000}]})
    assert len(info.value.errors) == 3
    assert str(info.value).startswith("3 problems: ")


@pytest.mark.parametrize("body", [None, [], "job", 5])
def test_body_must_be_an_object(body: Any) -> None:
    assert one_problem(body) == "a job must be a JSON object"


@pytest.mark.parametrize("body", [{}, {"queue": "q"}, {"metadata": {}}])
def test_body_needs_operations_or_task(body: Any) -> None:
    assert "needs 'operations'" in one_problem(body)


@pytest.mark.parametrize("ops", [[], {}, "x", None])
def test_operations_must_be_a_non_empty_list(ops: Any) -> None:
    assert one_problem({"operations": ops}) == "operations: expected a non-empty list"


def test_operation_must_be_an_object() -> None:
    assert "operations[1]: expected an object" in problems(
        {"operations": [{"task": "sys.echo"}, "sys.echo"]})


# limits --------------------------------------------------------------------------------
def test_json_depth_limit() -> None:
    limits = Limits(max_json_depth=4)
    parse({"task": "sys.echo", "args": {"x": [1]}}, limits)  # depth 4
    assert "nested deeper than 4" in one_problem(
        {"task": "sys.echo", "args": {"x": [[1]]}}, limits)


def test_json_depth_counts() -> None:
    assert json_depth(1, 10) == 1
    assert json_depth({"a": [1, {"b": 2}]}, 10) == 4
    assert json_depth([], 10) == 1
    deep: Any = 0
    for _ in range(10_000):
        deep = [deep]
    assert json_depth(deep, 5) == 6  # stops counting past the limit


def test_string_length_limit_covers_keys_and_values() -> None:
    limits = Limits(max_string_length=10)
    parse({"task": "sys.echo", "args": {"x": "a" * 10}}, limits)
    assert "longer than 10" in one_problem({"task": "sys.echo", "args": {"x": "a" * 11}}, limits)
    assert "longer than 10" in one_problem({"task": "sys.echo", "args": {"k" * 11: 1}}, limits)
    assert "longer than 10" in one_problem(
        {"task": "sys.echo", "metadata": {"m": ["b" * 11]}}, limits)


def test_limits_cover_subclasses_from_python_callers() -> None:
    """A body built in Python may hold subclasses of the JSON types: they are walked too."""

    class Text(str):
        pass

    class Items(list[Any]):
        pass

    limits = Limits(max_string_length=10, max_json_depth=4)
    body = collections.OrderedDict(task="sys.echo", args=collections.OrderedDict(x=Text("a" * 11)))
    assert "longer than 10" in one_problem(body, limits)
    assert "longer than 10" in one_problem(
        {"task": "sys.echo", "args": {Text("k" * 11): 1}}, limits)
    assert "nested deeper than 4" in one_problem(
        {"task": "sys.echo", "args": {"x": Items([[1]])}}, limits)


def test_operations_per_job_limit() -> None:
    limits = Limits(max_operations_per_job=3)
    assert len(parse({"operations": [{"task": "sys.echo"}] * 3}, limits).operations) == 3
    assert "more than 3" in one_problem({"operations": [{"task": "sys.echo"}] * 4}, limits)


def test_args_size_limit() -> None:
    limits = Limits(max_args_bytes=50)
    parse({"task": "sys.echo", "args": {"x": "a" * 30}}, limits)
    assert one_problem({"task": "sys.echo", "args": {"x": "a" * 60}}, limits) == (
        "operations[0].args: larger than 50 bytes")


def test_metadata_limits() -> None:
    limits = Limits(max_metadata_bytes=20)
    assert one_problem({"task": "sys.echo", "metadata": {"x": "a" * 30}}, limits) == (
        "metadata: larger than 20 bytes")
    assert one_problem({"task": "sys.echo", "metadata": [1]}) == "metadata: expected an object"


@pytest.mark.parametrize("key", ["", 5, ["k"], "k" * 257])
def test_bad_key(key: Any) -> None:
    assert one_problem({"task": "sys.echo", "key": key}) == (
        "operations[0].key: expected a string of 1 to 256 characters")


def test_longest_key_is_accepted() -> None:
    assert parse({"task": "sys.echo", "key": "k" * 256}).operations[0].key == "k" * 256


@pytest.mark.parametrize("queue", ["", "has space", "slash/no", "é", "x" * 201, 5, "-lead"])
def test_bad_queue_name(queue: Any) -> None:
    assert one_problem({"task": "sys.echo", "queue": queue}).startswith("queue: 1-200")


@pytest.mark.parametrize("queue", ["a", "A_b.c:d-e", "0", "x" * 200])
def test_good_queue_name(queue: str) -> None:
    assert parse({"task": "sys.echo", "queue": queue}).queue == queue


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("priority", 1001, "must be between -1000 and 1000"),
        ("priority", -1001, "must be between -1000 and 1000"),
        ("priority", 1.5, "expected integer"),
        ("priority", True, "expected integer"),
        ("priority", "1", "expected integer"),
        ("delay_s", -1, "must be between 0 and"),
        ("delay_s", 365 * 24 * 3600 + 1, "must be between 0 and"),
        ("delay_s", float("inf"), "expected number"),
        ("delay_s", float("nan"), "expected number"),
        ("delay_s", "soon", "expected number"),
        ("max_attempts", 0, "must be between 1 and 100"),
        ("max_attempts", 101, "must be between 1 and 100"),
        ("max_attempts", 2.0, "expected integer"),
        ("timeout_s", 0, "must be between 0.001 and 86400"),
        ("timeout_s", 86_401, "must be between 0.001 and 86400"),
        ("timeout_s", False, "expected number"),
    ],
)
def test_number_ranges(field: str, value: Any, message: str) -> None:
    found = one_problem({"task": "sys.echo", field: value})
    assert found.startswith(f"operations[0].{field}: {message}"), found


@pytest.mark.parametrize(("field", "value"), [
    ("priority", 1000), ("priority", -1000), ("delay_s", 0), ("delay_s", 365 * 24 * 3600.0),
    ("max_attempts", 1), ("max_attempts", 100), ("timeout_s", 0.001), ("timeout_s", 86_400),
])
def test_number_range_bounds_are_inclusive(field: str, value: float) -> None:
    assert getattr(parse({"task": "sys.echo", field: value}).operations[0], field) == value


# idempotency ---------------------------------------------------------------------------
def test_request_hash_only_with_an_idempotency_key() -> None:
    body = {"task": "sys.echo", "args": {"a": 1}}
    assert parse(body).request_hash is None
    job = parse(body, idempotency_key="order-1")
    assert job.idempotency_key == "order-1"
    assert job.request_hash == request_hash(body)


def test_request_hash_ignores_key_order_but_not_values() -> None:
    one = {"task": "sys.echo", "args": {"a": 1, "b": [1, 2]}, "metadata": {"x": "é"}}
    two = {"metadata": {"x": "é"}, "args": {"b": [1, 2], "a": 1}, "task": "sys.echo"}
    assert request_hash(one) == request_hash(two)
    assert request_hash(one) != request_hash({**one, "args": {"a": 1, "b": [2, 1]}})
    assert request_hash(one) != request_hash({**one, "args": {"a": 2, "b": [1, 2]}})
    assert len(request_hash(one)) == 64


def test_same_body_same_hash_through_parse() -> None:
    a = parse({"task": "sys.echo", "args": {"x": 1, "y": 2}}, idempotency_key="k")
    b = parse({"args": {"y": 2, "x": 1}, "task": "sys.echo"}, idempotency_key="k")
    assert a.request_hash == b.request_hash
    assert a.id != b.id


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_bad_idempotency_key(key: str) -> None:
    assert one_problem({"task": "sys.echo"}, idempotency_key=key) == (
        "Idempotency-Key: 1 to 255 characters")
