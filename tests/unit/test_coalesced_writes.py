"""CoalescedWrites: the writes of one event-loop turn leave in one, in order; closing sends
what is held first; a transport that is closing gets nothing more."""

from __future__ import annotations

import asyncio

from conveyor.api.http_protocol import CoalescedWrites


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.events: list[str] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.events.append("write")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def _turn() -> None:
    await asyncio.sleep(0)


async def test_writes_of_one_turn_leave_together_in_order() -> None:
    real = _Transport()
    writes = CoalescedWrites(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n")
    writes.write(b"")
    writes.write(bytearray(b"{}"))
    assert real.writes == []  # held until the turn ends
    await _turn()
    assert real.writes == [b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}"]
    writes.write(b"a")
    await _turn()
    writes.write(b"b")
    await _turn()
    assert real.writes[1:] == [b"a", b"b"]


async def test_close_sends_what_is_held_first() -> None:
    real = _Transport()
    writes = CoalescedWrites(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"head")
    writes.write(b"body")
    writes.close()
    assert real.events == ["write", "close"] and real.writes == [b"headbody"]
    await _turn()  # the scheduled flush finds nothing left
    assert real.writes == [b"headbody"]


async def test_an_aborted_connection_gets_nothing_more() -> None:
    real = _Transport()
    writes = CoalescedWrites(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"head")
    writes.abort()  # passed through to the transport
    await _turn()
    assert real.writes == []
    assert writes.get_extra_info("peername") == "info:peername"
