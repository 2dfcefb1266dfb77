from __future__ import annotations

import pytest

from conveyor.config import load_config, redact_url
from conveyor.errors import ConfigError


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_url("postgresql://u@db/x") == "postgresql://u@db/x"
    assert redact_url("sqlite:///conveyor.db") == "sqlite:///conveyor.db"


def test_store_shown_is_redacted() -> None:
    config = load_config({"store": "postgresql://u:pw@h/db"}, environ={})
    assert "pw" not in config.store_shown
    assert config.store == "postgresql://u:pw@h/db"


def test_environment_is_read_and_flags_win() -> None:
    env = {"CONVEYOR_PORT": "9001", "CONVEYOR_CONCURRENCY": "7"}
    config = load_config({"port": 9002}, environ=env)
    assert (config.port, config.concurrency) == (9002, 7)


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        load_config(environ={"CONVEYOR_PORT": "eighty"})
    with pytest.raises(ConfigError):
        load_config({"transport": "carrier-pigeon"}, environ={})


def test_event_loop_defaults_to_uvloop_when_installed() -> None:
    import asyncio

    import uvloop

    from conveyor.server import loop_factory

    assert load_config(environ={}).event_loop == "auto"
    factory = loop_factory(load_config(environ={}))
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    chosen = load_config(environ={"CONVEYOR_EVENT_LOOP": "asyncio"})
    assert loop_factory(chosen) is None
    assert asyncio.Runner(loop_factory=loop_factory(chosen)) is not None
    with pytest.raises(ConfigError, match="event_loop"):
        load_config({"event_loop": "trio"}, environ={})
