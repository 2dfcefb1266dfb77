"""Pure parts of protecting the API: the token bucket, auth mode, backpressure decisions,
key format."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from conveyor.backpressure import Backpressure, DepthSource
from conveyor.config import backpressure_thresholds, load_config
from conveyor.errors import ConfigError, Overloaded
from conveyor.keys import key_id_of, matches, new_key, parse_scopes
from conveyor.model import NewJob, NewOperation
from conveyor.ratelimit.memory import MemoryLimiter


def test_token_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = MemoryLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.take("a").allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.take("a")
    assert refused.remaining == 0 and refused.retry_after_s == pytest.approx(0.5)
    assert limiter.take("b").allowed, "buckets are per key"
    now[0] += 0.5
    assert limiter.take("a").allowed and not limiter.take("a").allowed
    now[0] += 100
    assert limiter.take("a").remaining == 2, "never more than the burst"


def test_token_bucket_memory_is_bounded() -> None:
    limiter = MemoryLimiter(1.0, 1, max_keys=10)
    for i in range(1000):
        limiter.take(f"client:{i}")
    assert len(limiter._buckets) == 10


@pytest.mark.parametrize(("host", "auth", "required"), [
    ("127.0.0.1", "auto", False), ("localhost", "auto", False), ("::1", "auto", False),
    ("127.0.0.2", "auto", False), ("0.0.0.0", "auto", True), ("::", "auto", True),
    ("10.1.2.3", "auto", True), ("example.org", "auto", True),
    ("127.0.0.1", "required", True),
])
def test_keys_are_required_beyond_loopback(host: str, auth: str, required: bool) -> None:
    config = load_config({"host": host, "auth": auth}, environ={})
    assert config.auth_required is required


def test_protection_settings_are_validated() -> None:
    for bad in ({"auth": "off"}, {"rate_limit_failure_mode": "maybe"},
                {"rate_limit_per_s": -1}, {"redis_url": "http://x"},
                {"backpressure_queues": ("q=1",)}, {"backpressure_queues": ("=1:2",)}):
        with pytest.raises(ConfigError):
            load_config(bad, environ={})
    config = load_config({}, environ={"CONVEYOR_BACKPRESSURE_QUEUES": "a=1:2, b=3:4",
                                      "CONVEYOR_RATE_LIMIT_PER_S": "7.5"})
    assert backpressure_thresholds(config) == {"*": (100_000, 1_000_000), "a": (1, 2),
                                               "b": (3, 4)}
    assert config.rate_limit_per_s == 7.5


def _job(queue: str, *priorities: int) -> NewJob:
    return NewJob(operations=tuple(NewOperation("t", {}, priority=p) for p in priorities),
                  queue=queue)


async def test_backpressure_refuses_low_priority_at_warn_and_all_at_critical() -> None:
    depth = {"q": 0}
    rejected: list[tuple[str, str]] = []

    async def source(found: Mapping[str, int]) -> dict[str, int]:
        return dict(depth)

    async def broken(found: Mapping[str, int]) -> dict[str, int]:
        raise RuntimeError("lag unknown")

    bp = Backpressure({"*": (0, 0), "q": (10, 20)}, [source, broken], refresh_s=1e-9,
                      on_reject=lambda q, level: rejected.append((q, level)))
    await bp.admit([_job("q", -1), _job("other", -5)])
    depth["q"] = 10
    await bp.admit([_job("q", 0), _job("q", -1, 5)])  # not all operations are low
    with pytest.raises(Overloaded) as warn:
        await bp.admit([_job("q", -1)])
    assert warn.value.status == 429 and warn.value.retry_after_s >= 1
    with pytest.raises(Overloaded):  # a batch is refused for any of its jobs, not the first
        await bp.admit([_job("q", 0), _job("other", -1), _job("q", -1)])
    depth["q"] = 20
    with pytest.raises(Overloaded) as critical:
        await bp.admit([_job("q", 100)])
    assert critical.value.status == 503
    await bp.admit([_job("other", -1)])
    assert rejected == [("q", "warn"), ("q", "warn"), ("q", "critical")]


async def test_every_depth_source_gets_what_the_earlier_ones_found() -> None:
    """One calling convention: each source is given the depths merged so far (the first
    an empty mapping); the admitted depth is the largest per queue; a failing source is
    skipped and the next one still gets the earlier findings."""
    given: list[dict[str, int]] = []

    def source(depths: dict[str, int]) -> DepthSource:
        async def read(found: Mapping[str, int]) -> Mapping[str, int]:
            given.append(dict(found))
            return depths
        return read

    async def broken(found: Mapping[str, int]) -> Mapping[str, int]:
        given.append(dict(found))
        raise RuntimeError("lag unknown")

    bp = Backpressure({"*": (0, 5)}, [source({"a": 1, "b": 7}), broken, source({"a": 6})])
    assert await bp.depths() == {"a": 6, "b": 7}
    assert given == [{}, {"a": 1, "b": 7}, {"a": 1, "b": 7}]
    with pytest.raises(Overloaded):
        await bp.admit([_job("a", 0)])


def test_key_format_and_scopes() -> None:
    key, plaintext = new_key("acme", ["submit", "read"])
    assert plaintext.startswith(f"cvk_{key.id}_") and key_id_of(plaintext) == key.id
    assert key.scopes == ("read", "submit") and matches(key, plaintext)
    assert key_id_of("cvk_nothex_x") is None and key_id_of(plaintext + "x") is None
    assert new_key("acme", ["read"])[1] != new_key("acme", ["read"])[1]
    with pytest.raises(ValueError):
        parse_scopes("read,root")
    with pytest.raises(ValueError):
        new_key("bad tenant!", ["read"])
