from __future__ import annotations

from pathlib import Path

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


def test_default_concurrency_lets_a_claim_fill_its_batch() -> None:
    # A worker claims and records at most `concurrency` operations at a time: below
    # claim_batch, every claim and outcome write of a backlog would be a short batch.
    config = load_config({}, environ={})
    assert config.concurrency >= config.claim_batch


def test_postgres_pipeline_reaches_the_store() -> None:
    from conveyor.store.postgres import PostgresStore
    from conveyor.wiring import make_store

    url = {"store": "postgresql://u@127.0.0.1:1/db"}
    plain = make_store(load_config(url, environ={}))
    piped = make_store(load_config(url, environ={"CONVEYOR_POSTGRES_PIPELINE": "true"}))
    assert isinstance(plain, PostgresStore) and isinstance(piped, PostgresStore)
    assert (plain.pipeline, piped.pipeline) == (False, True)


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        load_config(environ={"CONVEYOR_PORT": "eighty"})
    with pytest.raises(ConfigError, match="CONVEYOR_POSTGRES_PIPELINE='ture'"):
        load_config(environ={"CONVEYOR_POSTGRES_PIPELINE": "ture"})
    assert not load_config(environ={"CONVEYOR_POSTGRES_PIPELINE": "off"}).postgres_pipeline
    with pytest.raises(ConfigError):
        load_config({"transport": "carrier-pigeon"}, environ={})


def test_kafka_client_options_from_file_env_and_flags(tmp_path: Path) -> None:
    from conveyor.config import kafka_client_options

    properties = tmp_path / "client.properties"
    properties.write_text("# an existing cluster\nsecurity.protocol=SASL_SSL\n\n"
                          "sasl.mechanism=PLAIN\nsasl.password=p=a,s#s\n")
    env = {"CONVEYOR_KAFKA_OPTIONS_FILE": str(properties),
           "CONVEYOR_KAFKA_OPTIONS": "sasl.username=alice, ssl.ca.location=/etc/ca.pem"}
    config = load_config(environ=env)
    assert kafka_client_options(config) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
        "sasl.password": "p=a,s#s",  # the file keeps commas and '=' in values
        "sasl.username": "alice", "ssl.ca.location": "/etc/ca.pem"}
    flags = load_config({"kafka_options": ["sasl.mechanism=SCRAM-SHA-512"]}, environ=env)
    assert kafka_client_options(flags)["sasl.mechanism"] == "SCRAM-SHA-512"
    assert "p=a,s#s" not in repr(flags) and "alice" not in repr(flags)


def test_bad_kafka_client_options_name_the_key_never_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config({"kafka_options": ["s3cret-without-a-key"]}, environ={})
    with pytest.raises(ConfigError, match=r"bootstrap\.servers is set by Conveyor"):
        load_config({"kafka_options": ["bootstrap.servers=elsewhere:9092"]}, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config({"kafka_options_file": str(tmp_path / "missing")}, environ={})
    try:
        load_config({"kafka_options": ["s3cret-without-a-key"]}, environ={})
    except ConfigError as exc:
        assert "s3cret" not in str(exc)


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


def test_outcome_linger_is_read_from_the_environment_and_bounded_by_the_lease() -> None:
    assert load_config(environ={}).outcome_linger_s == 0.1
    assert load_config(environ={"CONVEYOR_OUTCOME_LINGER_S": "0"}).outcome_linger_s == 0.0
    for bad in ("-0.1", "4"):  # below zero, or not well inside the 10 s lease
        with pytest.raises(ConfigError, match="outcome_linger_s"):
            load_config(environ={"CONVEYOR_OUTCOME_LINGER_S": bad})


def test_gone_worker_retention_is_read_from_the_environment_and_positive() -> None:
    assert load_config(environ={}).gone_worker_retention_s == 86_400.0
    env = {"CONVEYOR_GONE_WORKER_RETENTION_S": "600"}
    assert load_config(environ=env).gone_worker_retention_s == 600.0
    with pytest.raises(ConfigError, match="gone_worker_retention_s"):
        load_config(environ={"CONVEYOR_GONE_WORKER_RETENTION_S": "0"})


def test_the_relay_runs_in_the_api_unless_told_not_to() -> None:
    assert load_config(environ={}).relay_in_process is True
    assert load_config(environ={"CONVEYOR_RELAY_IN_PROCESS": "0"}).relay_in_process is False
    assert load_config({"relay_in_process": False}, environ={}).relay_in_process is False


def test_relay_spread_run_reaches_the_publisher_and_is_at_least_one() -> None:
    from conveyor.transport.kafka.producer import SPREAD_RUN
    from conveyor.wiring import make_relay, make_store

    kafka = {"store": "postgresql://u@127.0.0.1:1/db", "transport": "kafka",
             "kafka_bootstrap": "127.0.0.1:1"}
    assert load_config(kafka, environ={}).relay_spread_run == SPREAD_RUN
    config = load_config(kafka, environ={"CONVEYOR_RELAY_SPREAD_RUN": "4"})
    relay = make_relay(config, make_store(config))
    try:
        assert relay._publisher._spread_run == 4  # type: ignore[attr-defined]
    finally:
        relay.close()
    with pytest.raises(ConfigError, match="relay_spread_run"):
        load_config(kafka, environ={"CONVEYOR_RELAY_SPREAD_RUN": "0"})
