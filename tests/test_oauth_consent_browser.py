"""The consent page in Chromium: approve with the organization picker, deny, and an
org-bound app's single choice. The client's redirect URI is answered by Playwright
(``page.route``), which records where the browser was sent."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from scopegate.services import directory
from support.http import bearer
from support.live_server import LiveServer
from support.oauth import REDIRECT_URI, authorize_params, pkce, query_of, register
from support.settings import PASSWORD
from support.world import World, build_world_quick

pytestmark = pytest.mark.browser

OWNER = World.email("owner")


@pytest.fixture
def world(server: LiveServer) -> World:
    with server.app.state.runtime.factory() as db:
        world = build_world_quick(db)
        # acme's owner is also a member of globex: the picker offers both.
        directory.add_member(db, directory.get_org(db, "globex"),
                             directory.get_user(db, world.users["owner"]), "member")
        db.commit()
    return world


class Callback:
    """The client's redirect URI, answered in the browser; remembers the last URL."""

    def __init__(self, page: Page) -> None:
        self.url = ""
        page.route(REDIRECT_URI + "*", self._answer)

    def _answer(self, route: Route) -> None:
        self.url = route.request.url
        route.fulfill(status=200, content_type="text/html", body="<h1>client</h1>")


def _sign_in_and_open(page: Page, server: LiveServer, params: dict[str, str]) -> None:
    url = server.url("/oauth/authorize?" + urlencode(params))
    page.goto(url)
    page.fill("input[name=email]", OWNER)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(lambda current: current == url)


def _exchange(server: LiveServer, app, code: str, verifier: str) -> dict:
    answer = httpx.post(server.url("/oauth/token"), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier, "client_id": app.client.client_id,
        "client_secret": app.client_secret})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_consent_page_approve_with_the_organization_picker(
        server: LiveServer, world: World, page: Page) -> None:
    with server.app.state.runtime.factory() as db:
        app = register(db, world.users["owner"])
    callback = Callback(page)
    verifier, challenge = pkce()
    _sign_in_and_open(page, server, authorize_params(app.client.client_id, challenge))

    expect(page.get_by_test_id("app-name")).to_have_text("Deploy dashboard")
    expect(page.get_by_test_id("redirect-host")).to_have_text("127.0.0.1:9999")
    expect(page.get_by_test_id("unverified")).to_have_count(0)  # registered by a person
    expect(page.locator("li.scope-row[data-scope='event:read']")).to_contain_text(
        "See issues and events.")
    expect(page.locator("input[name=orgs]")).to_have_count(2)
    page.check("input[name=orgs][value=acme]")
    page.check("input[name=orgs][value=globex]")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(REDIRECT_URI + "*")

    returned = query_of(callback.url)
    assert returned["state"] == "st-123"
    assert returned["iss"] == server.base_url
    token = _exchange(server, app, returned["code"], verifier)["access_token"]
    for org in ("acme", "globex"):
        answer = httpx.get(server.url(f"/api/0/organizations/{org}/issues/"),
                           headers=bearer(token))
        assert answer.status_code == 200, (org, answer.text)


def test_consent_page_deny_sends_access_denied(server: LiveServer, world: World,
                                              page: Page) -> None:
    with server.app.state.runtime.factory() as db:
        app = register(db, world.users["owner"])
    callback = Callback(page)
    _, challenge = pkce()
    _sign_in_and_open(page, server, authorize_params(app.client.client_id, challenge))
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url(REDIRECT_URI + "*")
    returned = query_of(callback.url)
    assert returned["error"] == "access_denied"
    assert returned["state"] == "st-123"
    assert "code" not in returned


def test_an_org_bound_app_gets_exactly_one_organization(server: LiveServer, world: World,
                                                       page: Page) -> None:
    with server.app.state.runtime.factory() as db:
        app = register(db, world.users["owner"], org_bound=True)
    callback = Callback(page)
    verifier, challenge = pkce()
    _sign_in_and_open(page, server, authorize_params(app.client.client_id, challenge))
    radios = page.locator("input[type=radio][name=orgs]")
    expect(radios).to_have_count(2)
    page.check("input[name=orgs][value=globex]")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(REDIRECT_URI + "*")
    token = _exchange(server, app, query_of(callback.url)["code"], verifier)["access_token"]
    globex = httpx.get(server.url("/api/0/organizations/globex/issues/"), headers=bearer(token))
    acme = httpx.get(server.url("/api/0/organizations/acme/issues/"), headers=bearer(token))
    assert (globex.status_code, acme.status_code) == (200, 404)
