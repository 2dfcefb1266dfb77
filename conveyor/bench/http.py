"""A lean HTTP/1.1 keep-alive client on raw asyncio, for generating load.

On a small machine the load generator competes with the server for the same cores, so it
must cost little per request: requests are pre-encoded bytes, a response is parsed only as
far as its status line, ``Content-Length`` (or chunked framing) and body, and connections
are reused from a bounded pool. Only loopback addresses may be targeted.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import socket
from typing import Any
from urllib.parse import urlsplit


class LoadError(Exception):
    """The target cannot be used (not loopback, unreachable, malformed responses)."""


def loopback_target(url: str) -> tuple[str, int]:
    """``(host, port)`` of an ``http://`` URL, refusing anything but a loopback address."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise LoadError(f"{url!r}: only http:// URLs are supported")
    host = parts.hostname
    port = parts.port or 80
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise LoadError(f"cannot resolve {host!r}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_loopback:
            raise LoadError(f"{url!r} is not a loopback address: the benchmark only targets "
                            "this machine (127.0.0.1, localhost, ::1)")
    return host, port


def encode_request(method: str, path: str, host: str, body: bytes | None = None,
                   content_type: str = "application/json") -> bytes:
    """A complete HTTP/1.1 request as bytes, ready to be written again and again."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Accept: */*"]
    if body is not None:
        head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(f"connection closed: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is not None:
            self._parse()

    def send(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        waiter: asyncio.Future[tuple[int, bytes]] = self._loop.create_future()
        self._waiter = waiter
        self.transport.write(raw)
        return waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = bytes(buf[:end]).split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            self._fail(f"malformed status line {lines[0][:80]!r}")
            return
        length = 0
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif lname == b"connection" and b"close" in value.lower():
                self.reusable = False
        start = end + 4
        if chunked:
            parsed = _dechunk(buf, start)
            if parsed is None:
                return
            body, consumed = parsed
        else:
            if len(buf) < start + length:
                return
            body, consumed = bytes(buf[start:start + length]), start + length
        del buf[:consumed]
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))

    def _fail(self, message: str) -> None:
        waiter, self._waiter = self._waiter, None
        self.reusable = False
        if waiter is not None and not waiter.done():
            waiter.set_exception(LoadError(message))


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``start``; None until it is complete."""
    out = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n", pos)
            if trailer_end < 0:
                return None
            return bytes(out), trailer_end + 2
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos:pos + size]
        pos += size + 2


class HttpPool:
    """At most ``connections`` keep-alive connections to one loopback server.

    A request waits for a free connection when all are busy (that wait is part of its
    latency, as for any real client with a connection limit)."""

    def __init__(self, url: str, connections: int = 64, timeout_s: float = 30.0) -> None:
        self.host, self.port = loopback_target(url)
        self.host_header = f"{self.host}:{self.port}"
        self.max_connections = max(1, connections)
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = (
            collections.deque())
        self._all: set[_Connection] = set()

    def encode(self, method: str, path: str, body: bytes | None = None) -> bytes:
        return encode_request(method, path, self.host_header, body)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Connection(loop), self.host, self.port)
        self._all.add(conn)
        return conn

    async def _acquire(self) -> _Connection:
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
                self._forget(conn)
            if self._open < self.max_connections:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    raise
            waiter: asyncio.Future[_Connection | None] = (
                asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
            conn_or_none = await waiter
            if conn_or_none is not None:
                return conn_or_none

    def _forget(self, conn: _Connection) -> None:
        if conn in self._all:
            self._all.discard(conn)
            self._open -= 1

    def _release(self, conn: _Connection) -> None:
        if conn.closed or not conn.reusable:
            conn.close()
            self._forget(conn)
            while self._waiters:  # let a waiter open a fresh connection
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send a pre-encoded request; returns ``(status, body)``. Raises on connection
        errors and past ``timeout_s``."""
        conn = await self._acquire()
        ok = False
        try:
            future = conn.send(raw)
            handle = asyncio.get_running_loop().call_later(
                self.timeout_s, _expire, future, self.timeout_s)
            try:
                result = await future
            finally:
                handle.cancel()
            ok = True
            return result
        finally:
            if not ok:
                conn.reusable = False
            self._release(conn)

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Convenience for control calls: JSON in, JSON (or None) out."""
        raw_body = None if body is None else json.dumps(body).encode()
        status, data = await self.send(self.encode(method, path, raw_body))
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None

    async def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
        self._open = 0
        await asyncio.sleep(0)


def _expire(future: asyncio.Future[tuple[int, bytes]], timeout_s: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"no response within {timeout_s:g} s"))


def job_id_of(body: bytes) -> str | None:
    """The ``id`` of a job response (its first field), without a full JSON parse."""
    if body.startswith(b'{"id":"'):
        end = body.find(b'"', 7)
        if end > 7:
            return body[7:end].decode("ascii")
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value.get("id") if isinstance(value, dict) else None
