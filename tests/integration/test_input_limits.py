"""Input limits on a real API process: body size (declared and chunked, enforced while
reading: a 100 MB chunked body does not grow the process's memory), nesting depth,
operations per job, argument and string sizes, names, media type."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.config import Limits
from tests.support.processes import ConveyorProcess, serve

LIMITS = Limits()
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConveyorProcess]:
    proc = serve(Path(tmp_path_factory.mktemp("limits")),
                 env={"CONVEYOR_RATE_LIMIT_PER_S": "0", "CONVEYOR_PROCESSES": "1"})
    yield proc
    proc.stop()


def padded(size: int) -> bytes:
    """A valid job body of exactly ``size`` bytes (JSON allows trailing whitespace)."""
    body = json.dumps({"task": "sys.noop", "args": {}}).encode()
    return body + b" " * (size - len(body))


def problem(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM) and "Traceback" not in r.text
    return str(r.json()["detail"])


def post(url: str, content: bytes | Iterator[bytes], path: str = "/v1/jobs",
         content_type: str = "application/json") -> httpx.Response:
    return httpx.post(url + path, content=content, headers={"Content-Type": content_type},
                      timeout=30)


def test_body_at_the_limit_is_accepted_one_byte_over_is_413(server: ConveyorProcess) -> None:
    limit = LIMITS.max_body_bytes
    assert post(server.url, padded(limit)).status_code == 202
    assert "larger than" in problem(post(server.url, padded(limit + 1)), 413)
    # chunked (no Content-Length): counted while reading
    chunks = lambda data: iter([data[i:i + 65536] for i in range(0, len(data), 65536)])  # noqa: E731
    assert post(server.url, chunks(padded(limit))).status_code == 202
    problem(post(server.url, chunks(padded(limit + 1))), 413)
    batch_limit = LIMITS.max_batch_body_bytes
    big = json.dumps({"jobs": [{"task": "sys.noop"}]}).encode()
    problem(post(server.url, big + b" " * (batch_limit + 1 - len(big)), "/v1/jobs/batch"), 413)


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_100_mb_chunked_body_is_refused_without_growing_memory(server: ConveyorProcess) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    before_kb = _peak_rss_kb(pid)
    chunk = b"[" + b"1," * 32767 + b"1"  # 64 KiB of a never-ending JSON array
    total = 100 * 1024 * 1024
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port or 0), timeout=30) as sock:
        sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json"
                     b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while sent < total:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: it stopped reading, as it should
        try:
            sock.settimeout(10)
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < total, "the server closed the connection instead of reading it all"
    grown_kb = _peak_rss_kb(pid) - before_kb
    assert grown_kb < 8 * 1024, f"peak RSS grew by {grown_kb} KiB"
    time.sleep(0.1)
    assert httpx.get(f"{server.url}/health/ready").status_code == 200, "still serving"


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/batch", "/v1/dlq/replay"])
def test_json_nested_10000_levels_is_a_4xx(server: ConveyorProcess, path: str) -> None:
    for deep in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
                 b"[" * 10_000):
        r = post(server.url, deep, path)
        assert 400 <= r.status_code < 500, r.text
        assert r.headers["content-type"].startswith(PROBLEM)


def test_shape_and_size_limits_are_clear_422s(server: ConveyorProcess) -> None:
    url = server.url

    def submit(body: object) -> httpx.Response:
        return httpx.post(f"{url}/v1/jobs", json=body)

    many = {"operations": [{"task": "sys.noop"}] * (LIMITS.max_operations_per_job + 1)}
    assert "more than" in problem(submit(many), 422)
    args = {"task": "sys.sleep", "args": {"seconds": 0, "pad": "x" * LIMITS.max_args_bytes}}
    problem(submit(args), 422)
    long_string = {"task": "sys.noop", "metadata": {"note": "y" * (LIMITS.max_string_length + 1)}}
    assert "longer than" in problem(submit(long_string), 422)
    for queue in ("has space", "slash/name", "", "x" * 201, "semi;colon", "ünï"):
        assert "queue" in problem(submit({"task": "sys.noop", "queue": queue}), 422)
    assert "unknown task" in problem(submit({"task": "no.such.task"}), 422)
    problem(submit({"task": "../../etc"}), 422)
    assert "unknown field" in problem(submit({"operations": [{"task": "sys.noop"}],
                                              "extra": 1}), 422)
    problem(submit({"task": "sys.noop", "key": "k" * (LIMITS.max_key_length + 1)}), 422)
    problem(post(url, b'{"task": "sys.noop", "args": {"x": NaN}}'), 400)
    # numbers a float cannot hold (they would parse as infinity, which no answer can carry)
    for path, huge in (("/v1/jobs", b'{"task": "math.sqrt", "args": {"x": 1e400}}'),
                       ("/v1/jobs", b'{"task": "sys.noop", "metadata": {"x": [-1.5e999]}}'),
                       ("/v1/jobs/batch", b'{"jobs": [{"task": "sys.noop", "metadata": 1e400}]}')):
        assert "out of range" in problem(post(url, huge, path), 422)
    problem(post(url, b"\x80\x04\x95pickle", content_type="application/octet-stream"), 415)
    problem(post(url, b"\x80\x04\x95pickle"), 400)
    problem(httpx.post(f"{url}/v1/jobs", content=b"{}", headers={
        "Content-Type": "application/json", "Idempotency-Key": "i" * 256}), 422)
