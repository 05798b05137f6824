"""Clickjacking, in Chromium: another origin frames the approval page of a logged-in person.

The attacker's page is served from a second loopback port: cross-origin but same-site,
so the browser sends scopegate's ``SameSite=Lax`` session cookie with the framed
request and the server answers with the real, logged-in approval page. What keeps the
Approve button out of the attacker's frame is the response's ``X-Frame-Options: DENY``
and ``frame-ancestors 'none'``. The controls show the rest of the attack works: the
URL opened top-level shows Approve, and the same frame with those two headers stripped
(by Playwright, in the browser) shows it too.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page, Response, Route, expect

from support.live_server import HOST, LiveServer
from support.settings import PASSWORD
from support.world import World, build_world_quick

pytestmark = pytest.mark.browser

MEMBER = World.email("member")
APPROVAL = "/organizations/acme/agent/approve?session=framed&scopes=event:write"
FRAMING_HEADERS = ("x-frame-options", "content-security-policy")


@contextmanager
def attacker_site(target: str) -> Iterator[str]:
    """An origin of its own on loopback whose page frames ``target``; yields its URL.

    The frame's ``load`` event marks the page, so the test can wait for the framed
    navigation to finish (blocked or not) instead of sleeping.
    """
    page = (
        "<!doctype html><title>Win a prize</title>"
        f'<iframe id="victim" src="{escape(target)}" width="900" height="700" '
        "onload=\"document.body.dataset.framed = 'done'\"></iframe>"
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="attacker-site", daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()


@pytest.fixture
def world(server: LiveServer) -> World:
    with server.app.state.runtime.factory() as session:
        return build_world_quick(session)


def log_in(page: Page, server: LiveServer) -> None:
    page.goto(server.url("/login"))
    page.fill("input[name=email]", MEMBER)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    expect(page).to_have_url(server.url("/account"))


def open_attacker_page(page: Page, attacker: str, approval: str) -> Response:
    """Open the attacker's page; return scopegate's answer to the framed request once
    the frame has finished loading."""
    with page.expect_response(approval) as framed:
        page.goto(attacker)
    expect(page.locator("body")).to_have_attribute("data-framed", "done")
    return framed.value


def test_clickjacking_approval_page_cannot_be_framed(
    server: LiveServer, world: World, page: Page
) -> None:
    approval = server.url(APPROVAL)
    log_in(page, server)

    # Control 1: opened top-level, the URL is the approval page with its Approve button.
    page.goto(approval)
    expect(page.get_by_role("button", name="Approve")).to_be_enabled()

    with attacker_site(approval) as attacker:
        assert not attacker.startswith(server.base_url)  # another origin (another port)

        # Control 2: the same frame, with the framing headers stripped in the browser,
        # renders the logged-in approval page: the cookie went along, and the framed
        # document is visible to this test.
        def strip_framing_headers(route: Route) -> None:
            answer = route.fetch()
            headers = {k: v for k, v in answer.headers.items() if k not in FRAMING_HEADERS}
            route.fulfill(response=answer, headers=headers)

        page.route(approval, strip_framing_headers)
        open_attacker_page(page, attacker, approval)
        expect(page.frame_locator("#victim").get_by_role("button", name="Approve")
               ).to_be_visible()
        page.unroute(approval)

        # The attack: scopegate answers the framed request with the real page (200,
        # Approve inside), and the browser refuses to show it in the frame.
        framed = open_attacker_page(page, attacker, approval)
        assert framed.status == 200
        victim = page.frame_locator("#victim")
        expect(victim.get_by_role("button", name="Approve")).to_have_count(0)
        expect(victim.locator("form#approve-form")).to_have_count(0)
        [child] = page.main_frame.child_frames
        assert not child.url.startswith(server.base_url), child.url
        # ... because of these two headers (control 2 showed the page without them).
        assert framed.headers["x-frame-options"] == "DENY"
        assert re.search(r"frame-ancestors 'none'", framed.headers["content-security-policy"])
