"""The web dashboard: one HTML page at ``/`` and its static assets under ``/ui/``.

Everything is served by the package itself (vanilla HTML, CSS and ES modules, no build
step, no request to any other host). The page reads and acts only through the public JSON
API (``/v1/...``), so it sees exactly what the API lets its key see.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

router = APIRouter(include_in_schema=False)
STATIC = (Path(__file__).parent / "static").resolve()
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
# The page may talk to its own origin only: no CDN, no third-party request, no inline code.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _file(path: Path) -> Response:
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)


@router.get("/")
async def index() -> Response:
    return _file(STATIC / "index.html")


@router.get("/ui/{name:path}")
async def asset(name: str) -> Response:
    path = (STATIC / name).resolve()
    if (not path.is_relative_to(STATIC) or not path.is_file()
            or path.suffix not in MEDIA_TYPES):
        return Response("not found", status_code=404, media_type="text/plain")
    return _file(path)
