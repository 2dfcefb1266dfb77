"""JSON schemas for task arguments: derived from type hints, checked without the task's code.

Workers publish each task's schema to the store, so an API process validates submissions
for tasks it has never imported. Only the subset of JSON Schema this module emits is
checked (``type``, ``properties``, ``required``, ``additionalProperties``, ``items``,
``enum``, ``anyOf``); anything else in a schema is accepted as is.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

_SCALARS: dict[Any, dict[str, Any]] = {
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
}


def hint_schema(hint: Any) -> dict[str, Any]:
    """The schema of one annotation; unknown annotations accept any JSON value."""
    if hint is inspect.Parameter.empty or hint is Any or hint is object:
        return {}
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if set(args) == {int, float}:
            return {"type": "number"}
        return {"anyOf": [hint_schema(a) for a in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, set, frozenset) and args:
        return {"type": "array", "items": hint_schema(args[0])}
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return {"type": "array", "items": hint_schema(args[0])}
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple):
        return {"type": "array"}
    if origin is dict or hint is dict:
        return {"type": "object", "additionalProperties": hint_schema(args[1])} if args else {
            "type": "object"
        }
    return {}


def function_schema(fn: Callable[..., Any], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """An object schema of ``fn``'s keyword arguments (those in ``skip`` are left out)."""
    hints = typing.get_type_hints(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    accepts_more = False
    for name, param in inspect.signature(fn).parameters.items():
        if name in skip:
            continue
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_more = True
            continue
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            continue
        prop = hint_schema(hints.get(name, inspect.Parameter.empty))
        if param.default is inspect.Parameter.empty:
            required.append(name)
        elif _is_json(param.default):
            prop["default"] = param.default
        properties[name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = accepts_more
    return schema


def _is_json(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


_EXACT_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,), "number": (int, float), "string": (str,), "boolean": (bool,),
    "null": (type(None),), "array": (list,), "object": (dict,),
}
"""The types JSON decodes each schema type to: a value of exactly one of them matches
without the checks above (which also take subclasses, and keep booleans out of numbers)."""


def _matches(expected: str, value: Any) -> bool:
    exact = _EXACT_TYPES.get(expected)
    if exact is None:  # a type this module does not check: accepted as is
        return True
    return type(value) in exact or _TYPE_CHECKS[expected](value)


def validate(value: Any, schema: dict[str, Any], path: str = "args") -> list[str]:
    """Problems with ``value`` against ``schema``, each naming the offending path."""
    problems: list[str] = []
    if "anyOf" in schema:
        results = [(sub, validate(value, sub, path)) for sub in schema["anyOf"]]
        if all(found for _, found in results):
            # Report the alternative of the value's own type, if any, for a precise message.
            same_type = [found for sub, found in results
                         if _TYPE_CHECKS.get(sub.get("type", ""), lambda v: False)(value)]
            if same_type:
                return same_type[0]
            kinds = ", ".join(sub.get("type", "any") for sub in schema["anyOf"])
            problems.append(f"{path}: expected one of [{kinds}], got {_kind(value)}")
        return problems
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: must be one of {schema['enum']!r}")
        return problems
    expected = schema.get("type")
    if expected and not _matches(expected, value):
        return [f"{path}: expected {expected}, got {_kind(value)}"]
    if isinstance(value, dict) and expected == "object":
        props: dict[str, Any] = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{path}.{name}: required argument is missing")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                problems.extend(validate(item, props[name], f"{path}.{name}"))
            elif extra is False:
                allowed = ", ".join(sorted(props)) or "none"
                problems.append(f"{path}.{name}: unknown argument (allowed: {allowed})")
            elif isinstance(extra, dict):
                problems.extend(validate(item, extra, f"{path}.{name}"))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems.extend(validate(item, schema["items"], f"{path}[{i}]"))
    return problems


def _kind(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPE_CHECKS[name](value):
            return name
    return type(value).__name__
