"""A person creates a user token in the browser, sees its secret once, and revokes it.

Chromium drives the real pages served by uvicorn on loopback; httpx checks that the
secret the page showed authenticates, and stops authenticating once revoked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from scopegate.core import scopes as s
from scopegate.core.roles import Role
from support.live_server import LiveServer, live_app
from support.settings import PASSWORD
from support.world import World, build_world

pytestmark = pytest.mark.browser

CHOSEN_SCOPES = (s.ORG_READ, s.EVENT_READ)
#: Set SCOPEGATE_SCREENSHOTS=/some/dir to keep screenshots of each step.
SCREENSHOTS = os.environ.get("SCOPEGATE_SCREENSHOTS")


@pytest.fixture
def server(sqlite_url: str) -> Iterator[LiveServer]:
    with live_app(sqlite_url) as running:
        with running.app.state.runtime.factory() as session:
            build_world(session)
        yield running


def _shot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


def _organizations(server: LiveServer, token: str) -> httpx.Response:
    return httpx.get(
        server.url("/api/0/organizations/"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_token_secret_is_shown_once_and_revocation_stops_it(
    server: LiveServer, page: Page
) -> None:
    page.goto(server.url("/login"))
    _shot(page, "1-login")
    page.fill("input[name=email]", World.email(Role.OWNER))
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(server.url("/account"))

    form = page.locator("#create-token")
    form.locator("input[name=name]").fill("browser test")
    for scope in CHOSEN_SCOPES:
        form.locator(f"input[name=scopes][value='{scope}']").check()
    form.locator("button[type=submit]").click()

    shown = page.locator("[data-testid=new-token]")
    expect(shown).to_be_visible()
    secret = shown.inner_text().strip()
    assert secret.startswith("sgu_")
    _shot(page, "2-created")

    listed = _organizations(server, secret)
    assert listed.status_code == 200, listed.text
    assert "acme" in {org["slug"] for org in listed.json()}

    page.goto(server.url("/account"))
    _shot(page, "3-account")
    assert page.locator("[data-testid=new-token]").count() == 0
    assert secret not in page.content()
    row = page.locator("#tokens tbody tr", has_text="browser test")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(secret[-4:])
    for scope in CHOSEN_SCOPES:
        expect(row).to_contain_text(scope)

    with page.expect_navigation():
        row.locator("button", has_text="Revoke").click()
    expect(page.locator("#tokens tbody tr", has_text="browser test")).to_have_count(0)
    _shot(page, "4-revoked")
    assert f"sgu_…{secret[-4:]}" not in page.content()

    revoked = _organizations(server, secret)
    assert revoked.status_code == 401
    assert 'error="invalid_token"' in revoked.headers["www-authenticate"]
