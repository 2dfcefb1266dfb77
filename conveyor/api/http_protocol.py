"""uvicorn's HTTP/1.1 protocol (httptools), with each response's writes sent together.

uvicorn writes a response's status line and headers as soon as the app starts the response,
then its body: two ``send`` system calls and two TCP segments for every answer that fits in
one, and on the client's side often two wake-ups. :class:`CoalescedWrites` holds the writes
made during one turn of the event loop and sends them at its end in one call. An app that
sends its start and its whole body without waiting in between (every response of the
submission lane, see :mod:`conveyor.api.submit`) thus answers in one write.

Measured on 2 cores (``conveyor bench -w b2 --duration 6``, embedded tier, 6 alternating
pairs): median 3,151 → 3,473 requests/s, the server's CPU per request 288-396 → 272-368
µs (medians 313 → 280), the load generator's 38-53 → 26-35 µs.

Guarantees: bytes leave in the order written, at the latest one loop turn later; closing
sends what is held first; an aborted connection drops it, as the transport would.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescedWrites:
    """A transport's proxy whose writes of one loop turn leave in one ``write``."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(bytes(data))

    def _flush(self) -> None:
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over :class:`CoalescedWrites`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]


HTTP_SETTINGS: dict[str, Any] = {
    "http": HttpProtocol, "log_level": "warning", "access_log": False, "lifespan": "off",
    "server_header": False,
}
"""How Conveyor's API is served (``uvicorn.Config`` keywords), also by the benchmark's
bare endpoints (:mod:`conveyor.bench.bare_asgi`) so its ceilings measure the same stack."""
