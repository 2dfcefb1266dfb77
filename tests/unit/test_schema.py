"""Argument schemas: derived from type hints, checked without the task's code."""

from __future__ import annotations

import collections
import enum
from typing import Any, Literal, Optional, Union

import pytest

from conveyor.schema import function_schema, hint_schema, validate
from conveyor.tasks import Context


class Custom:
    pass


@pytest.mark.parametrize(
    ("hint", "schema"),
    [
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (str, {"type": "string"}),
        (bool, {"type": "boolean"}),
        (type(None), {"type": "null"}),
        (Any, {}),
        (object, {}),
        (Custom, {}),
        (int | float, {"type": "number"}),
        (Union[float, int], {"type": "number"}),  # noqa: UP007 - the typing spelling too
        (int | None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (Optional[str], {"anyOf": [{"type": "string"}, {"type": "null"}]}),  # noqa: UP045
        (int | str, {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
        (Literal["a", "b", 3], {"enum": ["a", "b", 3]}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (set[str], {"type": "array", "items": {"type": "string"}}),
        (frozenset[bool], {"type": "array", "items": {"type": "boolean"}}),
        (tuple[float, ...], {"type": "array", "items": {"type": "number"}}),
        (tuple[int, str], {"type": "array"}),
        (list, {"type": "array"}),
        (tuple, {"type": "array"}),
        (dict, {"type": "object"}),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (dict[str, Any], {"type": "object", "additionalProperties": {}}),
        (list[dict[str, list[int]]], {"type": "array", "items": {
            "type": "object", "additionalProperties": {"type": "array",
                                                      "items": {"type": "integer"}}}}),
    ],
)
def test_hint_schema(hint: Any, schema: dict[str, Any]) -> None:
    assert hint_schema(hint) == schema


def test_hint_schema_returns_fresh_dicts() -> None:
    first = hint_schema(int)
    first["default"] = 5
    assert hint_schema(int) == {"type": "integer"}


def test_function_schema_required_defaults_and_extras() -> None:
    def fn(a: int, b: str = "x", c: float | None = None, d: list[int] = [],  # noqa: B006
           e: Custom = Custom(), *rest: int, f: bool = True, **more: Any) -> None:  # noqa: B008
        pass

    schema = function_schema(fn)
    assert schema["type"] == "object"
    assert schema["required"] == ["a"]
    assert schema["additionalProperties"] is True  # **more accepts other names
    props = schema["properties"]
    assert list(props) == ["a", "b", "c", "d", "e", "f"]
    assert props["a"] == {"type": "integer"}
    assert props["b"] == {"type": "string", "default": "x"}
    assert props["c"] == {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None}
    assert props["d"] == {"type": "array", "items": {"type": "integer"}}  # not a JSON scalar
    assert props["e"] == {}
    assert props["f"] == {"type": "boolean", "default": True}


def test_function_schema_skips_positional_only_unannotated_and_skip() -> None:
    def fn(pos: int, /, ctx: Context, plain, n: int = 1) -> None:  # type: ignore[no-untyped-def]
        pass

    schema = function_schema(fn, skip=frozenset({"ctx"}))
    assert list(schema["properties"]) == ["plain", "n"]
    assert schema["properties"]["plain"] == {}
    assert schema["required"] == ["plain"]
    assert schema["additionalProperties"] is False


def test_function_schema_without_parameters() -> None:
    def fn() -> None:
        pass

    assert function_schema(fn) == {"type": "object", "properties": {},
                                   "additionalProperties": False}


async def test_function_schema_of_async_function() -> None:
    async def fn(url: str, retries: int = 3) -> None:
        pass

    schema = function_schema(fn)
    assert schema["required"] == ["url"]
    assert schema["properties"]["retries"] == {"type": "integer", "default": 3}


def _task(a: int, b: float, tags: list[str] | None = None,
          mode: Literal["fast", "slow"] = "fast", opts: dict[str, int] | None = None) -> None:
    pass


SCHEMA = function_schema(_task)


@pytest.mark.parametrize(
    ("args", "problems"),
    [
        ({"a": 1, "b": 2.5}, []),
        ({"a": 1, "b": 2}, []),  # an integer is a number
        ({"a": 1, "b": 2, "tags": ["x", "y"], "mode": "slow", "opts": {"k": 1}}, []),
        ({"a": 1, "b": 2, "tags": None, "opts": None}, []),
        ({"b": 1.0}, ["args.a: required argument is missing"]),
        ({}, ["args.a: required argument is missing", "args.b: required argument is missing"]),
        ({"a": 1.5, "b": 1}, ["args.a: expected integer, got number"]),
        ({"a": True, "b": 1}, ["args.a: expected integer, got boolean"]),
        ({"a": 1, "b": "2"}, ["args.b: expected number, got string"]),
        ({"a": 1, "b": False}, ["args.b: expected number, got boolean"]),
        ({"a": 1, "b": 1, "mode": "medium"}, ["args.mode: must be one of ['fast', 'slow']"]),
        ({"a": 1, "b": 1, "zzz": 1},
         ["args.zzz: unknown argument (allowed: a, b, mode, opts, tags)"]),
        ({"a": 1, "b": 1, "tags": "x"},
         ["args.tags: expected one of [array, null], got string"]),
        ({"a": 1, "b": 1, "tags": ["x", 2]},
         ["args.tags[1]: expected string, got integer"]),
        ({"a": 1, "b": 1, "opts": {"k": "v"}},
         ["args.opts.k: expected integer, got string"]),
    ],
)
def test_validate_task_arguments(args: dict[str, Any], problems: list[str]) -> None:
    assert validate(args, SCHEMA) == problems


def test_subclasses_from_python_callers_are_checked_like_their_json_types() -> None:
    """Arguments submitted from Python may be subclasses (an IntEnum, an OrderedDict)."""

    class Level(enum.IntEnum):
        HIGH = 2

    class Tag(str):
        pass

    ordered = collections.OrderedDict(a=Level.HIGH, b=1.5, tags=[Tag("x")])
    assert validate(ordered, SCHEMA) == []
    assert validate({"a": 1, "b": Tag("2")}, SCHEMA) == ["args.b: expected number, got string"]
    assert validate(collections.UserList([1]), {"type": "array"}) == [
        "args: expected array, got UserList"]


def test_validate_reports_nested_paths() -> None:
    schema = {"type": "object", "properties": {
        "rows": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}}, "required": ["id"]}}}}
    value = {"rows": [{"id": 1}, {"id": "x"}, {}, 5]}
    assert validate(value, schema, "args") == [
        "args.rows[1].id: expected integer, got string",
        "args.rows[2].id: required argument is missing",
        "args.rows[3]: expected object, got integer",
    ]


def test_validate_additional_properties_schema() -> None:
    schema = hint_schema(dict[str, list[int]])
    assert validate({"a": [1], "b": []}, schema) == []
    assert validate({"a": [1, "2"]}, schema) == ["args.a[1]: expected integer, got string"]
    assert validate([], schema) == ["args: expected object, got array"]


@pytest.mark.parametrize("value", [None, 1, 1.5, "s", True, [1, [2]], {"k": {"v": None}}])
def test_empty_schema_accepts_any_json(value: Any) -> None:
    assert validate(value, {}) == []


def test_unknown_schema_keywords_and_types_are_accepted() -> None:
    assert validate("x", {"type": "string", "minLength": 5, "format": "email"}) == []
    assert validate(1, {"type": "mystery"}) == []


def test_null_and_enum_of_mixed_values() -> None:
    assert validate(None, {"type": "null"}) == []
    assert validate(0, {"type": "null"}) == ["args: expected null, got integer"]
    assert validate(3, hint_schema(Literal["a", 3])) == []
    assert validate("3", hint_schema(Literal["a", 3])) == ["args: must be one of ['a', 3]"]


def test_any_of_accepts_either_branch() -> None:
    schema = hint_schema(int | list[str])
    assert validate(1, schema) == []
    assert validate(["a"], schema) == []
    assert validate(1.5, schema) == ["args: expected one of [integer, array], got number"]
