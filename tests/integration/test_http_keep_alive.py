"""The API's HTTP/1.1 protocol (conveyor.api.http_protocol) on a real ``conveyor serve``
over loopback: responses on a keep-alive connection each arrive whole, and one asked to
close the connection is sent whole before it closes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ConveyorProcess, serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConveyorProcess]:
    proc = serve(Path(tmp_path_factory.mktemp("http")), env={"CONVEYOR_PROCESSES": "1"})
    yield proc
    proc.stop()


def _request(method: str, path: str, body: bytes = b"", close: bool = False) -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n")
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def _response(sock: socket.socket, buffered: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response read by its ``content-length``; what follows stays in ``buffered``."""
    while b"\r\n\r\n" not in buffered:
        data = sock.recv(65536)
        assert data, "the connection closed before a whole head"
        buffered += data
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers["content-length"])
    while len(rest) < length:
        data = sock.recv(65536)
        assert data, "the connection closed before a whole body"
        rest += data
    buffered[:] = rest[length:]
    return int(lines[0].split()[1]), headers, rest[:length]


def test_keep_alive_responses_arrive_whole_and_in_order(server: ConveyorProcess) -> None:
    job = json.dumps({"task": "math.add", "args": {"a": 2, "b": 3}}).encode()
    with socket.create_connection(("127.0.0.1", server.port or 0), timeout=30) as sock:
        buffered = bytearray()
        sock.sendall(_request("POST", "/v1/jobs", job))
        status, headers, body = _response(sock, buffered)
        assert status == 202 and headers["content-type"] == "application/json"
        job_id = json.loads(body)["id"]
        assert headers["location"] == f"/v1/jobs/{job_id}"
        # two requests at once: two whole answers, in order, on the same connection
        sock.sendall(_request("GET", f"/v1/jobs/{job_id}") + _request("GET", "/health/live"))
        status, _, body = _response(sock, buffered)
        assert status == 200 and json.loads(body)["id"] == job_id
        status, _, body = _response(sock, buffered)
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert buffered == b""


def test_a_response_before_closing_is_sent_whole(server: ConveyorProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port or 0), timeout=30) as sock:
        sock.sendall(_request("POST", "/v1/jobs", b"{not json", close=True))
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"connection: close" in head.lower()
    assert len(body) == int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert json.loads(body)["status"] == 400
