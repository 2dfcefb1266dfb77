"""What the OpenAPI document says about bodies and errors, so that it matches what the
API does (it is fuzzed against it: tests/integration/test_schemathesis.py).

Request bodies are validated by :mod:`conveyor.submission`; their schemas here are the
pydantic models of :mod:`.schemas` with every reference inlined (a request body's schema
must stand on its own). Every error is an ``application/problem+json`` document.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from .schemas import ProblemOut, ReplayIn

PROBLEM_SCHEMA = ProblemOut.model_json_schema()


def problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}


V1_ERRORS: dict[int | str, dict[str, Any]] = {
    400: problem("Malformed request: empty body or invalid JSON"),
    401: problem("Missing, malformed, unknown or revoked API key"),
    403: problem("The key lacks the scope this route needs"),
    404: problem("No such job or operation for this tenant"),
    413: problem("Request body too large"),
    415: problem("The body is not application/json"),
    422: problem("Invalid request: the detail says what and where"),
    429: problem("Rate limit exceeded, or low-priority work refused by backpressure; "
                 "see Retry-After"),
    503: problem("The store is unavailable, or the queue is overloaded; see Retry-After"),
}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]), defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its (non-recursive) ``$defs`` inlined."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    return dict(_inline(schema, defs))


def body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": schema}}}}


def replay_schema() -> dict[str, Any]:
    """A replay must say what to replay: ids, a filter, or ``all: true``."""
    schema = inline_schema(ReplayIn)
    schema["anyOf"] = [
        {"required": ["ids"], "properties": {"ids": {"type": "array"}}},
        {"required": ["queue"], "properties": {"queue": {"type": "string"}}},
        {"required": ["task"], "properties": {"task": {"type": "string"}}},
        {"required": ["job_id"], "properties": {"job_id": {"type": "string"}}},
        {"required": ["all"], "properties": {"all": {"const": True}}},
    ]
    return schema
