"""The dashboard on the Kafka tier: the overview shows each queue's consumer lag (real
PostgreSQL, real broker, ``conveyor api`` with its relay, no worker yet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.browser.test_dashboard import DESKTOP, open_tab
from tests.support.fleet import kafka_env, migrate, start_api
from tests.support.kafka import bootstrap, unique_prefix
from tests.support.postgres import create_database, drop_database


def test_overview_shows_consumer_lag(browser: Any, tmp_path: Path, screenshots: Path) -> None:
    url = create_database("conveyor_dashboard_kafka")
    env = kafka_env(bootstrap(), unique_prefix("dashboard"), 3)  # the API relays by default
    api = None
    try:
        assert migrate(url, tmp_path).returncode == 0
        api = start_api(url, tmp_path, "api", env)
        answer = httpx.post(f"{api.url}/v1/jobs/batch", timeout=30, json={"jobs": [
            {"task": "test.record", "args": {"n": i, "sleep_s": 0}} for i in range(7)]})
        assert answer.status_code == 202, answer.text
        tab = open_tab(browser, api.url, DESKTOP)
        try:
            tab.goto("/overview")
            page = tab.page
            page.locator("#queues-table th", has_text="Lag").wait_for()
            # The relay publishes the 7 operations; no consumer has read them: lag 7.
            page.locator("#queues-table tr[data-queue=default] td.lag",
                         has_text="7").wait_for(timeout=30_000)
            page.screenshot(path=screenshots / "overview-kafka.png", full_page=True)
            tab.assert_clean()
        finally:
            tab.page.context.close()
    finally:
        if api is not None:
            api.stop()
        drop_database(url)
