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


def test_outcome_linger_is_read_from_the_environment_and_bounded_by_the_lease() -> None:
    assert load_config(environ={}).outcome_linger_s == 0.1
    assert load_config(environ={"CONVEYOR_OUTCOME_LINGER_S": "0"}).outcome_linger_s == 0.0
    for bad in ("-0.1", "4"):  # below zero, or not well inside the 10 s lease
        with pytest.raises(ConfigError, match="outcome_linger_s"):
            load_config(environ={"CONVEYOR_OUTCOME_LINGER_S": bad})
