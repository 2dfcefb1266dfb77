"""The web dashboard in a real headless Chromium against a real ``conveyor serve``.

Each test drives the page like a user (navigation, filters, clicks, the confirmation
dialog), checks what the API then reports, and fails on any browser console error, page
error or request to another host. Screenshots of every page land in
``$CONVEYOR_ARTIFACTS/screenshots/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.auth import create_key
from tests.support.processes import ConveyorProcess, serve, wait_until

ENV = {"CONVEYOR_RETRY_BASE_S": "0.05"}
TERMINAL = {"succeeded", "failed", "cancelled"}
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000
FORBIDDEN_TEXT = "this key may not replay (admin scope needed)"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConveyorProcess]:
    proc = serve(tmp_path_factory.mktemp("dashboard"), env=ENV)
    yield proc
    proc.stop()


@dataclass
class Tab:
    """A browser page plus everything it complained about."""

    page: Any
    base: str
    problems: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def goto(self, route: str) -> None:
        self.page.goto(f"{self.base}/#{route}")

    def assert_clean(self) -> None:
        problems = [p for p in self.problems if not any(a.search(p) for a in self.allowed)]
        assert problems == [], f"browser console errors: {problems}"
        assert self.foreign == [], f"requests to other hosts: {self.foreign}"


def open_tab(browser: Any, base: str, viewport: dict[str, int], **options: Any) -> Tab:
    context = browser.new_context(viewport=viewport, **options)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    tab = Tab(page, base)
    page.on("console", lambda m: m.type in ("error", "warning") and tab.problems.append(
        f"console.{m.type}: {m.text} @ {m.location}"))
    page.on("pageerror", lambda e: tab.problems.append(f"pageerror: {e}"))
    page.on("request", lambda r: r.url.startswith((base, "data:")) or tab.foreign.append(r.url))
    return tab


@pytest.fixture
def tab(browser: Any, server: ConveyorProcess) -> Iterator[Tab]:
    t = open_tab(browser, server.url, DESKTOP)
    yield t
    t.page.context.close()


def submit(url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def wait_job(url: str, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = httpx.get(f"{url}/v1/jobs/{job_id}").json()
        return job if job["status"] in TERMINAL else None

    return wait_until(done, 30)  # type: ignore[no-any-return]


def dead_job(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    job = submit(url, {"operations": [{"task": "sys.fail", "args": {}, "max_attempts": 1}]})
    job = wait_job(url, job["id"])
    op = job["operations"][0]
    assert op["status"] == "dead" and op["attempts"] == 1
    return job, op


def test_dashboard_is_served_by_the_package_itself(server: ConveyorProcess) -> None:
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "no third-party asset"
    js = httpx.get(f"{server.url}/ui/js/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{server.url}/ui/app.css").headers["content-type"].startswith("text/css")
    for bad in ("/ui/../dashboard.py", "/ui/%2e%2e/dashboard.py", "/ui/missing.js",
                "/ui/js"):
        assert httpx.get(f"{server.url}{bad}").status_code == 404, bad


def test_overview_shows_queues_live_chart_and_workers(tab: Tab, server: ConveyorProcess,
                                                      browser: Any, screenshots: Path) -> None:
    wait_job(server.url, submit(server.url, {"task": "math.add", "args": {"a": 1, "b": 1}})["id"])
    dead_job(server.url)
    tab.goto("/overview")
    page = tab.page
    row = page.locator("#queues-table tr[data-queue=default]")
    row.wait_for()
    assert row.locator("td").first.inner_text() == "default"
    # two polls at least: the chart draws a line from the rolling window of samples
    page.locator("svg.chart path.line.tp").wait_for(state="attached")
    page.locator("#live-status.live-ok").wait_for()
    assert "Live workers" in page.inner_text("main")
    assert page.locator("#dlq-count").inner_text() != "0"
    page.screenshot(path=screenshots / "overview.png", full_page=True)
    tab.assert_clean()

    phone = open_tab(browser, server.url, PHONE, is_mobile=True, has_touch=True,
                     device_scale_factor=2)
    try:
        phone.goto("/overview")
        phone.page.locator("#queues-table tr[data-queue=default]").wait_for()
        phone.page.locator("svg.chart path.line.tp").wait_for(state="attached")
        overflow = phone.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways on a phone ({overflow} px)"
        phone.page.screenshot(path=screenshots / "overview-phone.png", full_page=True)
        phone.goto("/dlq")
        phone.page.locator("#dlq-table").wait_for()
        phone.page.screenshot(path=screenshots / "dlq-phone.png", full_page=True)
        phone.assert_clean()
    finally:
        phone.page.context.close()


def test_submitted_job_appears_in_list_and_its_page_shows_the_result(
        tab: Tab, server: ConveyorProcess, screenshots: Path) -> None:
    job = submit(server.url, {"task": "math.add", "args": {"a": 2, "b": 3}})
    tab.goto("/jobs")
    page = tab.page
    row = page.locator(f"#jobs-table tr[data-id='{job['id']}']")
    row.wait_for()
    # filters narrow the list server side: status and task
    page.select_option("select[name=status]", "succeeded")
    page.wait_for_url(re.compile(r"status=succeeded"))
    row.wait_for()
    page.fill("input[name=task]", "sys.fail")
    page.press("input[name=task]", "Enter")
    row.wait_for(state="detached")
    page.click("#job-filters button:has-text('Clear')")
    row.wait_for()
    page.screenshot(path=screenshots / "jobs.png", full_page=True)

    row.click()
    page.wait_for_url(f"**/#/jobs/{job['id']}")
    page.locator(".job-status.s-succeeded").wait_for()
    op = page.locator("article.op").first
    assert op.locator(".result pre, pre.result").inner_text().strip() == "5"
    assert '"a": 2' in op.locator("pre.args").inner_text()
    assert op.locator("dd.attempts").inner_text() == "1 / 3"
    for timing in ("dd.started", "dd.finished"):  # the latest attempt's times, to the ms
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", op.locator(timing).inner_text())
    page.screenshot(path=screenshots / "job.png", full_page=True)

    # a failed job's page shows the error and its traceback
    failed, _ = dead_job(server.url)
    tab.goto(f"/jobs/{failed['id']}")
    page.locator(".job-status.s-failed").wait_for()
    assert "RuntimeError" in page.locator(".error-line").first.inner_text()
    page.click("details.traceback summary")
    assert "Traceback (most recent call last)" in page.locator("pre.tb").first.inner_text()
    page.screenshot(path=screenshots / "job-failed.png", full_page=True)

    # search by id
    tab.goto("/jobs")
    page.fill("input[name=id]", job["id"])
    page.press("input[name=id]", "Enter")
    page.wait_for_url(f"**/#/jobs/{job['id']}")
    page.locator(".job-status.s-succeeded").wait_for()
    tab.assert_clean()


def test_dead_letter_is_inspected_selected_and_replayed(
        tab: Tab, server: ConveyorProcess, screenshots: Path) -> None:
    job, op = dead_job(server.url)
    tab.goto(f"/dlq?job_id={job['id']}")
    page = tab.page
    row = page.locator(f"#dlq-table tr[data-id='{op['id']}']")
    row.wait_for()
    assert page.locator("#dlq-table tbody tr.dl-row").count() == 1, "the job_id filter applies"
    row.locator("button:has-text('Inspect')").click()
    assert "Traceback (most recent call last)" in page.locator("pre.tb").inner_text()
    row.locator("input[type=checkbox]").check()
    assert page.locator("#replay-selected").inner_text() == "Replay selected (1)"
    page.screenshot(path=screenshots / "dlq.png", full_page=True)

    page.click("#replay-selected")
    dialog = page.locator("#confirm-dialog")
    dialog.wait_for()
    assert "from attempt 1" in dialog.inner_text()
    page.screenshot(path=screenshots / "dlq-confirm.png")
    dialog.locator("[data-action=confirm]").click()
    page.locator(".toast-success", has_text="Replayed 1 operation").wait_for()

    def ran_again() -> dict[str, Any] | None:
        again = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()["operations"][0]
        done = again["status"] == "dead" and again["finished_at"] > op["finished_at"]
        return again if done else None

    again = wait_until(ran_again, 30)
    assert again["attempts"] == 1, "a replay starts again from attempt 1"
    assert again["started_at"] > op["finished_at"]
    tab.assert_clean()


def test_replay_everything_matching_the_filter(tab: Tab, server: ConveyorProcess) -> None:
    body = {"operations": [{"task": "sys.fail", "args": {}, "max_attempts": 1}] * 2}
    job = wait_job(server.url, submit(server.url, body)["id"])
    before = {o["id"]: o["finished_at"] for o in job["operations"]}
    assert {o["status"] for o in job["operations"]} == {"dead"}
    tab.goto("/dlq")
    page = tab.page
    page.fill("#dlq-filters input[name=job_id]", job["id"])
    page.press("#dlq-filters input[name=job_id]", "Enter")
    page.wait_for_url(re.compile(f"job_id={job['id']}"))
    rows = page.locator("#dlq-table tbody tr.dl-row")
    wait_until(lambda: rows.count() == 2 and all(
        rows.nth(i).get_attribute("data-id") in before for i in range(2)), 10)
    page.click("#replay-matching")
    dialog = page.locator("#confirm-dialog")
    assert f"job_id = {job['id']}" in dialog.inner_text()
    dialog.locator("[data-action=confirm]").click()
    page.locator(".toast-success", has_text="Replayed 2 operations").wait_for()

    def all_ran_again() -> bool:
        ops = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()["operations"]
        return all(o["status"] == "dead" and o["finished_at"] > before[o["id"]] for o in ops)

    wait_until(all_ran_again, 30)
    tab.assert_clean()


def test_cancelled_confirmation_replays_nothing(tab: Tab, server: ConveyorProcess) -> None:
    job, op = dead_job(server.url)
    tab.goto(f"/dlq?job_id={job['id']}")
    page = tab.page
    page.locator(f"#dlq-table tr[data-id='{op['id']}'] button:has-text('Replay')").click()
    page.locator("#confirm-dialog [data-action=cancel]").click()
    page.locator("#confirm-dialog").wait_for(state="hidden")
    page.wait_for_timeout(500)
    after = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()["operations"][0]
    assert after["finished_at"] == op["finished_at"] and after["status"] == "dead"
    tab.assert_clean()


def test_workers_page_shows_the_worker(tab: Tab, server: ConveyorProcess,
                                       screenshots: Path) -> None:
    workers = httpx.get(f"{server.url}/v1/workers").json()["workers"]
    worker = next(w for w in workers if w["status"] == "live")
    tab.goto("/workers")
    row = tab.page.locator(f"#workers-table tr[data-id='{worker['id']}']")
    row.wait_for()
    text = row.inner_text()
    assert worker["host"] in text and str(worker["pid"]) in text and "default" in text
    assert "in sync" in text
    tab.page.screenshot(path=screenshots / "workers.png", full_page=True)
    tab.assert_clean()


def test_api_key_is_sent_on_every_call_once_entered(tab: Tab, server: ConveyorProcess) -> None:
    """The key form stores the key for the session and every API call carries it."""
    page = tab.page
    seen: list[tuple[str, str | None]] = []
    page.on("request", lambda r: "/v1/" in r.url and seen.append(
        (r.url, r.headers.get("authorization"))))
    tab.goto("/overview")
    page.locator("#live-status.live-ok").wait_for()
    assert seen and all(auth is None for _, auth in seen), "no key, no header"
    page.click("#key-button")
    page.fill("#key-dialog input[name=key]", "test-key-123")
    seen.clear()
    page.click("#key-dialog button[type=submit]")
    page.wait_for_function("document.querySelector('#live-status').className.includes('live-')")
    page.wait_for_timeout(2500)
    assert seen, "the page kept polling"
    auth = httpx.post(f"{server.url}/v1/dlq/replay", json={"ids": []},
                      headers={"Authorization": "Bearer test-key-123"})
    if auth.status_code < 400:  # no authentication yet: the header is sent and ignored
        assert all(h == "Bearer test-key-123" for _, h in seen), seen
        assert page.evaluate("sessionStorage.getItem('conveyor.apiKey')") == "test-key-123"
        tab.assert_clean()
    else:
        # with authentication, an unknown key is refused (401) and the form is shown again
        tab.allowed.append(LOAD_ERROR)
        page.locator("#key-dialog[open]").wait_for()
        assert all(h == "Bearer test-key-123" for _, h in seen), seen


LOAD_ERROR = re.compile(r"Failed to load resource: the server responded with a status of 40[13]")


def simulate_auth(page: Any, keys: dict[str, set[str]]) -> None:
    """Answer in the browser like an API with keys would: 401 without a known key, 403
    for a replay by a key without the admin scope. (Exercises the page's side of the
    contract whether or not the server checks keys yet.)"""

    def handle(route: Any) -> None:
        auth = route.request.headers.get("authorization", "")
        scopes = keys.get(auth.removeprefix("Bearer "))
        problem = {"type": "about:blank", "instance": route.request.url}
        if scopes is None:
            route.fulfill(status=401, content_type="application/problem+json", json={
                **problem, "title": "Unauthorized", "status": 401, "detail": "missing key"})
        elif route.request.url.endswith("/v1/dlq/replay") and "admin" not in scopes:
            route.fulfill(status=403, content_type="application/problem+json", json={
                **problem, "title": "Forbidden", "status": 403, "detail": "admin scope needed"})
        else:  # the server runs open on loopback: the simulated key is not sent on
            headers = {k: v for k, v in route.request.headers.items()
                       if k.lower() != "authorization"}
            route.continue_(headers=headers)

    page.route(re.compile(r".*/v1/.*"), handle)


def test_401_asks_for_a_key_once_and_every_call_then_sends_it(
        tab: Tab, server: ConveyorProcess, screenshots: Path) -> None:
    tab.allowed.append(LOAD_ERROR)
    page = tab.page
    simulate_auth(page, {"good-key": {"read", "admin"}})
    headers: list[str | None] = []
    page.on("request", lambda r: "/v1/" in r.url and headers.append(
        r.headers.get("authorization")))
    tab.goto("/overview")
    dialog = page.locator("#key-dialog")
    dialog.wait_for()
    assert "401" in dialog.inner_text()
    page.screenshot(path=screenshots / "key-dialog.png")
    enter_key(page, "good-key")
    dialog.wait_for(state="hidden")
    headers.clear()
    page.locator("#queues-table tr[data-queue=default]").wait_for()
    page.locator("#live-status.live-ok").wait_for()
    page.wait_for_timeout(4500)  # two more polls at least (stats and workers each)
    assert len(headers) >= 4 and set(headers) == {"Bearer good-key"}, headers
    assert page.evaluate("sessionStorage.getItem('conveyor.apiKey')") == "good-key"
    # only the load failures of the 401 answers were logged, nothing else
    tab.assert_clean()


def enter_key(page: Any, key: str) -> None:
    """Type ``key`` into the open API-key dialog and submit it."""
    page.fill("#key-dialog input[name=key]", key)
    page.click("#key-dialog button[type=submit]")


def replay_is_refused(tab: Tab, job: dict[str, Any], op: dict[str, Any],
                      screenshot: Path) -> None:
    """With a key lacking the admin scope entered: replaying the dead ``op`` from the
    DLQ page is refused, and the page says the key needs the admin scope."""
    page = tab.page
    tab.goto(f"/dlq?job_id={job['id']}")
    row = page.locator(f"#dlq-table tr[data-id='{op['id']}']")
    row.locator("button:has-text('Replay')").click()
    page.locator("#confirm-dialog [data-action=confirm]").click()
    notice = page.locator(".notice-error")
    notice.wait_for()
    assert FORBIDDEN_TEXT in notice.inner_text().lower()
    page.screenshot(path=screenshot)


def test_403_on_replay_says_the_key_needs_admin_scope(
        tab: Tab, server: ConveyorProcess, screenshots: Path) -> None:
    tab.allowed.append(LOAD_ERROR)
    job, op = dead_job(server.url)
    page = tab.page
    simulate_auth(page, {"read-key": {"read"}})
    tab.goto("/overview")
    page.locator("#key-dialog").wait_for()
    enter_key(page, "read-key")
    replay_is_refused(tab, job, op, screenshots / "dlq-forbidden.png")
    after = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()["operations"][0]
    assert after["finished_at"] == op["finished_at"], "nothing was replayed"
    tab.assert_clean()


def test_polling_pauses_while_the_tab_is_hidden(tab: Tab, server: ConveyorProcess) -> None:
    page = tab.page
    calls: list[str] = []
    page.on("request", lambda r: "/v1/" in r.url and calls.append(r.url))
    tab.goto("/overview")
    page.locator("#live-status.live-ok").wait_for()
    page.wait_for_timeout(2500)
    assert len(calls) >= 4, "it polls every 2 s while visible"
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.locator("#live-status.live-paused").wait_for()
    page.wait_for_timeout(300)  # a request already under way may finish
    calls.clear()
    page.wait_for_timeout(4500)
    assert calls == [], "no request while hidden"
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.locator("#live-status.live-ok").wait_for()
    assert calls, "polling resumes when visible again"
    tab.assert_clean()


def test_key_without_admin_scope_cannot_replay(browser: Any, server: ConveyorProcess,
                                               screenshots: Path) -> None:
    """Against the real API: a key with read and submit scopes (made with
    ``conveyor keys create``) sees its tenant's dead letters but its replay is refused
    with 403, which the page explains; nothing is replayed. A made-up key is refused."""
    made_up = httpx.post(f"{server.url}/v1/dlq/replay", json={"ids": []},
                         headers={"Authorization": "Bearer made-up-key-for-the-probe"})
    assert made_up.status_code == 401
    job, op = dead_job(server.url)  # tenant "default": open loopback mode
    store = f"sqlite:///{server.log_path.parent / 'conveyor.db'}"
    _, key = create_key(store, "default", "read,submit", "dashboard")
    tab = open_tab(browser, server.url, DESKTOP)
    tab.allowed.append(LOAD_ERROR)
    page = tab.page
    try:
        tab.goto("/overview")
        page.locator("#live-status.live-ok").wait_for()
        page.click("#key-button")
        enter_key(page, key)
        replay_is_refused(tab, job, op, screenshots / "dlq-forbidden-real.png")
        assert page.evaluate("sessionStorage.getItem('conveyor.apiKey')") == key
        after = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()["operations"][0]
        assert after["status"] == "dead" and after["finished_at"] == op["finished_at"]
        tab.assert_clean()
    finally:
        page.context.close()
