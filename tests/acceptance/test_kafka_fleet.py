"""The Kafka tier as users run it: ``conveyor api``, ``conveyor relay`` and 3
``conveyor worker`` processes in one consumer group on a real broker, 12 partitions,
200 keys, 50,000 operations (and 20,000 without keys); one worker ``kill -9``-ed mid-run."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet import (
    OPS_SQL,
    check_outcomes,
    kill_busy_worker,
    query,
    start_kafka_fleet,
    stop_all,
    submit_keyed,
    wait_finished,
)
from tests.support.kafka import bootstrap, unique_prefix
from tests.support.postgres import create_database, drop_database
from tests.support.processes import ConveyorProcess, wait_until

pytestmark = pytest.mark.slow

OPS = int(os.environ.get("CONVEYOR_TEST_KAFKA_FLEET_OPS", "50000"))
KEYLESS_OPS = OPS * 2 // 5  # no parking: drains faster, and the kill is what matters
KEYS = 200
PARTITIONS = 12
BATCH = 1_000
LEASE_S = 3.0
TASK_S = 0.002


def _final_lags(address: str, prefix: str) -> list[Any]:
    import asyncio

    from conveyor.transport.kafka import KafkaLag

    lag = KafkaLag(address, prefix, cache_s=0)
    try:
        def settled() -> list[Any] | None:
            found = asyncio.run(lag.measure(["default"]))
            return found if found and all(p.lag == 0 for p in found) else None

        try:
            return wait_until(settled, 30, 0.5)  # type: ignore[no-any-return]
        except TimeoutError:
            return asyncio.run(lag.measure(["default"]))
    finally:
        lag.close()


def _outbox_left(url: str, timeout_s: float = 30.0) -> int:
    """Outbox rows once the relay is done with them. The last batch's operations can
    finish before the relay deletes its rows (it does so once Kafka acknowledged the
    whole batch), so a count taken the moment they finished may still see them."""
    def rows() -> int:
        return int(query(url, "SELECT count(*) AS n FROM outbox")[0]["n"])

    with contextlib.suppress(TimeoutError):
        wait_until(lambda: rows() == 0, timeout_s, 0.2)
    return rows()


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "keyless"])
def test_kafka_fleet_survives_a_killed_worker(tmp_path: Path, keyed: bool) -> None:
    """Keyed deliveries are leased with the key lock, keyless ones in one statement."""
    ops_n = OPS if keyed else KEYLESS_OPS
    address = bootstrap()
    url = create_database("conveyor_kafka_fleet")
    prefix = unique_prefix("fleet")
    procs: dict[str, ConveyorProcess] = {}
    try:
        fleet = start_kafka_fleet(url, tmp_path, address, prefix, partitions=PARTITIONS,
                                  workers=3, lease_s=LEASE_S, procs=procs)
        started = time.monotonic()
        acknowledged: list[str] = []
        errors: list[str] = []
        submitter = threading.Thread(target=submit_keyed, args=(
            fleet.api, list(range(KEYS)), ops_n // KEYS, BATCH, TASK_S, acknowledged, errors,
            keyed))
        submitter.start()

        killed = kill_busy_worker(url, fleet.api, fleet.workers[1], min_running=5,
                                  min_succeeded=ops_n // 10, timeout_s=300)
        held = killed.held
        rescue_s = killed.wait_rescued(url, 60)
        submitter.join(600)
        assert errors == []
        assert len(acknowledged) == ops_n

        wait_finished(url, ops_n, 900)
        elapsed_s = time.monotonic() - started
        ops = query(url, OPS_SQL)
        parked = _outbox_left(url)
        lags = _final_lags(address, prefix)
    finally:
        stop_all(procs.values())
        drop_database(url)

    executions = check_outcomes(ops, acknowledged, fleet.record_log, ops_n // KEYS)
    rerun = {str(r["id"]) for r in ops if int(r["attempts"]) > 1}
    assert rerun <= held, "only operations the killed worker held ran again"
    assert held, "the kill should have interrupted some operations"
    assert parked == 0, "the outbox drained"
    # Every partition, the killed worker's too, was consumed and committed to its end.
    assert sorted(p.partition for p in lags) == list(range(PARTITIONS))
    assert all(p.lag == 0 and p.committed == p.end_offset for p in lags), lags
    twice = sum(1 for n in executions.values() if n > 1)
    print(f"\nkafka fleet: {ops_n} operations in {elapsed_s:.1f} s "
          f"({ops_n / elapsed_s:.0f} ops/s), "
          f"{len(held)} held by the killed worker, rescued {rescue_s:.2f} s after the kill, "
          f"{twice} ran twice")
