"""Bare HTTP endpoints for the ASGI stage ceiling, served by uvicorn exactly as Conveyor's
API is (same loop, HTTP protocol, log and header settings).

``raw``: a plain ASGI callable that reads the body and answers 202 with a small JSON
document: what the HTTP stack alone can do. ``fastapi``: the same through a FastAPI
route that parses the JSON body: what the framework adds.

    python -m conveyor.bench.bare_asgi --port 8001 --kind raw
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..api.http_protocol import HTTP_SETTINGS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_BODY = b'{"id":"00000000000000000000000000000000","status":"queued","operations":[]}'


async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    status = 200 if scope["method"] == "GET" else 202  # GET /health/ready: 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(_BODY)).encode())]})
    await send({"type": "http.response.body", "body": _BODY})


def fastapi_app() -> Any:
    app = FastAPI()

    @app.post("/v1/jobs", status_code=202)
    async def submit(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        return JSONResponse({"id": "0" * 32, "status": "queued", "operations": [body]},
                            status_code=202)

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=["raw", "fastapi"], default="raw")
    args = parser.parse_args()
    app: Any = raw_app if args.kind == "raw" else fastapi_app()
    uvicorn.run(app, host="127.0.0.1", port=args.port, **HTTP_SETTINGS)


if __name__ == "__main__":
    main()
