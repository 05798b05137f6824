"""Debian's Chromium through Playwright, for browser tests.

``chromium(playwright)`` launches ``/usr/bin/chromium`` (Playwright cannot download its
own browsers here); without it the test is skipped, or fails under CI::

    with live_app(sqlite_url) as server, launched_chromium() as browser:
        with browser_page(browser) as page:
            page.goto(server.url("/login"))
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from support.settings import IN_CI

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> str:
    """The Chromium path; skip without it (fail under CI, which installs it)."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    message = f"{CHROMIUM} is missing: apt-get install chromium"
    if IN_CI:
        pytest.fail(message + " (.ci/run installs it; CI must run the browser tests)")
    pytest.skip(message)


@contextmanager
def chromium(playwright: Playwright) -> Iterator[Browser]:
    """Chromium launched headless with ``CHROMIUM_ARGS``, closed afterwards."""
    browser = playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@contextmanager
def browser_page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context and page, 1200x900, 10 s default timeout."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    """Playwright started and Chromium launched, both stopped afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, chromium(playwright) as launched:
        yield launched
