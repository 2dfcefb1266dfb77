"""Errors as ``application/problem+json`` (RFC 9457), and the handlers that produce them.

Every error the API returns has ``type``, ``title``, ``status`` and ``detail``; none
carries a traceback. Unexpected exceptions are logged and answered with a plain 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    IdempotencyConflict,
    NotFound,
    Overloaded,
    StoreUnavailable,
    ValidationError,
)

log = logging.getLogger("conveyor.api")
MEDIA_TYPE = "application/problem+json"
TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
    415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests",
    500: "Internal Server Error", 503: "Service Unavailable",
}


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None,
                 errors: list[Any] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors


def problem_response(request: Request, status: int, detail: str, *,
                     headers: dict[str, str] | None = None,
                     errors: list[Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def allowed_methods(request: Request) -> list[str]:
    """The methods the app answers on this request's path, by its most specific documented
    path (``POST /v1/jobs/batch`` is a route of its own, not ``GET /v1/jobs/{job_id}``)."""
    import re

    from starlette.routing import Match

    path = request.url.path
    candidates: list[tuple[int, list[str]]] = []
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            candidates.append((template.count("{"), [m.upper() for m in operations]))
    if candidates:
        fewest = min(n for n, _ in candidates)
        return sorted({m for n, methods in candidates if n == fewest for m in methods})
    return [m for m in ("GET", "POST") if any(
        route.matches({**request.scope, "method": m})[0] is Match.FULL
        for route in request.app.router.routes)]


def install(app: FastAPI) -> None:
    """Register handlers so every error, ours or the framework's, is a problem document."""

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.detail, headers=exc.headers,
                                errors=exc.errors)

    @app.exception_handler(ValidationError)
    async def on_invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return problem_response(request, 422, str(exc), errors=exc.errors or None)

    @app.exception_handler(NotFound)
    async def on_not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem_response(request, 404, str(exc))

    @app.exception_handler(IdempotencyConflict)
    async def on_conflict(request: Request, exc: IdempotencyConflict) -> JSONResponse:
        return problem_response(request, 409, str(exc))

    @app.exception_handler(Overloaded)
    async def on_overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        return problem_response(request, exc.status, str(exc),
                                headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(StoreUnavailable)
    async def on_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("store unavailable: %s", exc)
        return problem_response(request, 503, "the store is unavailable; retry shortly",
                                headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def on_request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid"
        return problem_response(request, 422, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(request, exc.status_code, detail, headers=headers)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(request, 500, "an unexpected error occurred")
