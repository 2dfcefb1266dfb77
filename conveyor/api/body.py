"""Reading request bodies safely: a size limit enforced while reading, strict JSON.

The limit is checked against ``Content-Length`` first and then against the bytes actually
received, chunk by chunk, so a chunked body cannot grow memory past the limit. JSON is
parsed without NaN/Infinity, and nesting is bounded before parsing so a deeply nested
document cannot exhaust the parser's stack.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from .problems import Problem


async def read_limited(request: Request, limit_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit_bytes:
                raise Problem(413, f"request body larger than {limit_bytes} bytes")
        except ValueError:
            raise Problem(400, "invalid Content-Length header") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise Problem(413, f"request body larger than {limit_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _max_depth(raw: bytes, limit: int) -> int:
    """Bracket nesting depth of a JSON text (brackets inside strings are skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes, max_depth: int) -> Any:
    if not raw.strip():
        raise Problem(400, "the request body is empty; expected a JSON document")
    if _max_depth(raw, max_depth) > max_depth:
        raise Problem(422, f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"malformed JSON: {exc}") from None


async def json_body(request: Request, limit_bytes: int, max_depth: int) -> Any:
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type.split(";")[0]:
        raise Problem(415, "send the body as application/json")
    return parse_json(await read_limited(request, limit_bytes), max_depth)


async def json_object(request: Request, limit_bytes: int, max_depth: int) -> dict[str, Any]:
    body = await json_body(request, limit_bytes, max_depth)
    if not isinstance(body, dict):
        raise Problem(422, "the request body must be a JSON object")
    return body
