"""The Kafka client log's rate limit, with an injected clock: the first event of a kind
is logged at once, then at most one line per window with the count it stands for."""

from __future__ import annotations

import logging

import pytest

from conveyor.transport.kafka.client_log import ClientLog


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "conveyor.kafka.client"]


def test_a_flood_of_one_kind_costs_one_line_per_window(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    counted: list[str] = []
    log = ClientLog(window_s=30.0, clock_s=clock, on_event=counted.append)
    caplog.set_level(logging.INFO, logger="conveyor.kafka.client")
    for _ in range(1000):  # 1000 failed reconnects in 10 s
        log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "Connect failed")
        clock.now_s += 0.01
    assert _lines(caplog) == ["kafka client FAIL: Connect failed"]
    clock.now_s = 130.0  # the window is over: the next one says what it stood for
    log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "Connect failed")
    assert _lines(caplog)[1] == ("kafka client FAIL: Connect failed "
                                 "(and 999 similar in the last 30 s)")
    log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "Connect failed")
    assert len(_lines(caplog)) == 2
    assert len(counted) == 1002 and log.events == 1002  # every event is counted


def test_kinds_are_limited_separately_and_quiet_ones_log_plainly(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    log = ClientLog(window_s=5.0, clock_s=clock)
    caplog.set_level(logging.INFO, logger="conveyor.kafka.client")

    class Error:
        def __init__(self, name: str) -> None:
            self._name = name

        def name(self) -> str:
            return self._name

        def str(self) -> str:
            return f"{self._name} happened"

        def fatal(self) -> bool:
            return False

    assert log.report("FAIL", logging.ERROR, "refused")
    log.error_cb(Error("_TRANSPORT"))
    log.error_cb(Error("_TRANSPORT"))
    log.error_cb(Error("_ALL_BROKERS_DOWN"))
    assert _lines(caplog) == ["kafka client FAIL: refused",
                              "kafka client _TRANSPORT: _TRANSPORT happened",
                              "kafka client _ALL_BROKERS_DOWN: _ALL_BROKERS_DOWN happened"]
    clock.now_s += 60
    assert log.report("FAIL", logging.ERROR, "refused again")  # nothing suppressed since
    assert _lines(caplog)[-1] == "kafka client FAIL: refused again"


def test_the_last_error_is_kept_for_readiness_while_recent(clock: Clock) -> None:
    log = ClientLog(window_s=30.0, clock_s=clock)
    assert log.last_error() is None
    log.report("FAIL", logging.INFO, "not an error")
    assert log.last_error() is None
    log.report("_TRANSPORT", logging.WARNING, "Connection refused")
    assert log.last_error() == "_TRANSPORT: Connection refused"
    log.report("_ALL_BROKERS_DOWN", logging.WARNING, "1/1 brokers are down")
    assert log.last_error() == "_TRANSPORT: Connection refused"  # the cause, not its echo
    clock.now_s += 31
    assert log.last_error() is None
