"""Headless Chromium (Debian's, driven by Playwright for Python) for the dashboard tests.

Without Chromium or Playwright the tests skip on a developer machine, and FAIL when
``CI=true``: a CI run must never pass by skipping its browser tests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CONVEYOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def _missing(what: str) -> None:
    message = (f"{what} is missing: run scripts/test.sh (it installs Debian's chromium and "
               "Playwright for Python)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API drives its own event loop on this thread, so
    it must be gone before any asyncio test runs."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python (pip install playwright)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(
            CHROMIUM):
        _missing(f"Chromium ({CHROMIUM}; apt-get install -y chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    root = Path(os.environ.get("CONVEYOR_ARTIFACTS", "artifacts"))
    path = root / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
