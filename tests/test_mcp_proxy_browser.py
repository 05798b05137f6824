"""Proxy mode's client approval page in Chromium: the person picks capabilities (inspect
fixed, the rest opt-in), approves, signs in upstream, consents, and the browser lands at
the MCP client's redirect URI with the front door's code; the upstream was asked for
exactly the chosen capabilities' scopes. Deny sends ``access_denied`` back."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from support.front_door import Pair, proxy_pair
from support.oauth import pkce, query_of
from support.settings import PASSWORD
from support.world import World

pytestmark = pytest.mark.browser
CLIENT_REDIRECT = "http://127.0.0.1:8125/callback"


class Recorder:
    """Answers the client's redirect URI in the browser and notes every upstream request."""

    def __init__(self, page: Page, pair: Pair) -> None:
        self.back = ""
        self.upstream: list[str] = []
        page.route(CLIENT_REDIRECT + "*", self._answer)
        page.on("request", lambda r: self.upstream.append(r.url)
                if r.url.startswith(pair.upstream.url("/oauth/authorize")) else None)

    def _answer(self, route: Route) -> None:
        self.back = route.request.url
        route.fulfill(status=200, content_type="text/html", body="<h1>client</h1>")


def _authorize_url(pair: Pair) -> str:
    client = httpx.post(pair.front.url("/oauth/register"), json={
        "client_name": "Browser MCP client", "redirect_uris": [CLIENT_REDIRECT],
        "token_endpoint_auth_method": "none", "application_type": "native"}).json()
    _, challenge = pkce()
    return pair.front.url("/oauth/authorize?") + urlencode({
        "response_type": "code", "client_id": client["client_id"],
        "redirect_uri": CLIENT_REDIRECT, "code_challenge": challenge,
        "code_challenge_method": "S256", "state": "st-1", "resource": pair.mcp_url})


def test_approve_chosen_capabilities_sign_in_upstream_and_return_with_a_code(
        database_url: str, sqlite_template: Path, tmp_path: Path, page: Page) -> None:
    with proxy_pair(database_url, sqlite_template, tmp_path) as pair:
        recorder = Recorder(page, pair)
        page.goto(_authorize_url(pair))
        expect(page.get_by_test_id("app-name")).to_have_text("Browser MCP client")
        expect(page.get_by_test_id("redirect-host")).to_have_text("127.0.0.1:8125")
        expect(page.get_by_test_id("unverified")).to_be_visible()
        inspect = page.locator("input[type=checkbox][value=inspect]")
        expect(inspect).to_be_checked()
        expect(inspect).to_be_disabled()
        expect(page.locator("input[type=checkbox][value=triage]")).not_to_be_checked()
        expect(page.locator("input[type=checkbox][value=releases]")).not_to_be_checked()
        page.check("input[type=checkbox][value=releases]")
        page.click("button[value=approve]")
        # Upstream: sign in, then its consent page.
        page.fill("input[name=email]", World.email("member"))
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action='/login'] button[type=submit]")
        page.check("input[name=orgs][value=acme]")
        page.click("button[value=approve]")
        page.wait_for_function("() => document.querySelector('h1')?.textContent === 'client'")
        back = query_of(recorder.back)
        assert back["state"] == "st-1" and back["iss"] == pair.front.base_url
        assert back["code"]
        asked = parse_qs(urlsplit(recorder.upstream[0]).query)
        assert asked["scope"] == ["org:read project:read project:releases event:read"]


def test_deny_sends_access_denied_to_the_client(
        database_url: str, sqlite_template: Path, tmp_path: Path, page: Page) -> None:
    with proxy_pair(database_url, sqlite_template, tmp_path) as pair:
        recorder = Recorder(page, pair)
        page.goto(_authorize_url(pair))
        page.click("button[value=deny]")
        page.wait_for_function("() => document.querySelector('h1')?.textContent === 'client'")
        back = query_of(recorder.back)
        assert back["error"] == "access_denied" and back["state"] == "st-1"
        assert back["iss"] == pair.front.base_url
        assert recorder.upstream == []  # nothing was asked upstream
