"""A real uvicorn server on loopback, and Debian's Chromium, for browser tests.

``live_server(make_app)`` binds 127.0.0.1 on a free port first, so the app can be built
knowing its own base URL (cookies, issuer, links), then serves it from a background
thread and returns once uvicorn reports ``started``. ``live_app(database_url)`` does that
for scopegate's own app on a migrated test database::

    with live_app(sqlite_url) as server, sync_playwright() as pw, chromium(pw) as browser:
        page = browser.new_page()
        page.goto(server.url("/login"))

``chromium(playwright)`` launches ``/usr/bin/chromium`` (Playwright cannot download its
own browsers here); without it the test is skipped, or fails under CI.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvicorn
from fastapi import FastAPI

from conftest import make_settings
from scopegate.web.app import create_app

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

HOST = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 15.0
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


@dataclass(frozen=True)
class LiveServer:
    app: FastAPI
    base_url: str

    def url(self, path: str = "/") -> str:
        return self.base_url + path


@contextmanager
def live_server(make_app: Callable[[str], FastAPI]) -> Iterator[LiveServer]:
    """Serve ``make_app(base_url)`` on 127.0.0.1 until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    base_url = f"http://{HOST}:{sock.getsockname()[1]}"
    app = make_app(base_url)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True
    )
    thread.start()
    try:
        _wait_started(server, thread)
        yield LiveServer(app=app, base_url=base_url)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        app.state.runtime.engine.dispose()


@contextmanager
def live_app(database_url: str) -> Iterator[LiveServer]:
    """scopegate on ``database_url`` (already migrated), with the test settings."""

    def make_app(base_url: str) -> FastAPI:
        return create_app(make_settings(database_url, base_url=base_url))

    with live_server(make_app) as server:
        yield server


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn stopped during startup (see the log above)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start within {STARTUP_TIMEOUT_SECONDS} s")
        time.sleep(0.01)


def require_chromium() -> str:
    """The Chromium path; skip without it (fail under CI, which installs it)."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    message = f"{CHROMIUM} is missing: apt-get install chromium"
    if os.environ.get("CI"):
        pytest.fail(message + " (.ci/run installs it; CI must run the browser tests)")
    pytest.skip(message)


@contextmanager
def chromium(playwright: Playwright) -> Iterator[Browser]:
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
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, chromium(playwright) as launched:
        yield launched
