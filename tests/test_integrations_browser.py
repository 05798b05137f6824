"""The permission editor in Chromium: an owner creates an integration, gives it every
scope through the page's controls, narrows it to ``org:ci``, opens and saves it again
unchanged, and mints a token that creates a release and nothing more."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from scopegate.core import permission_editor
from scopegate.core import scopes as registry
from scopegate.core.roles import Role
from scopegate.services import integrations
from support.live_server import LiveServer, live_app
from support.settings import PASSWORD
from support.world import World, build_world

pytestmark = pytest.mark.browser
EDITOR = "#permissions"


@pytest.fixture
def server(sqlite_url: str) -> Iterator[LiveServer]:
    with live_app(sqlite_url) as running:
        with running.app.state.runtime.factory() as session:
            build_world(session)
        yield running


def _stored(server: LiveServer, slug: str) -> frozenset[str]:
    with server.app.state.runtime.factory() as session:
        return integrations.get_integration(session, 1, slug).scopes


def _save(page: Page) -> None:
    page.locator(f"{EDITOR} button[type=submit]").click()
    expect(page.locator("#saved")).to_be_visible()


def test_the_permission_editor_round_trips_every_scope_and_org_ci(
    server: LiveServer, page: Page
) -> None:
    page.goto(server.url("/login"))
    page.fill("input[name=email]", World.email(Role.OWNER))
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(server.url("/account"))
    page.click("a[href='/organizations/acme/integrations']")

    page.fill("#new-integration input[name=name]", "Deploy bot")
    page.click("#new-integration button[type=submit]")
    page.wait_for_url(server.url("/organizations/acme/integrations/deploy-bot"))
    assert _stored(server, "deploy-bot") == frozenset()

    # Every row at its most powerful choice: every scope in the registry.
    for row in permission_editor.ROWS:
        page.select_option(f"{EDITOR} select[name='{row.key}']", row.choices[-1].value)
    _save(page)
    assert registry.expand(_stored(server, "deploy-bot")) == registry.ALL_SCOPES
    for row in permission_editor.ROWS:
        assert page.locator(f"select[name='{row.key}']").input_value() == row.choices[-1].value

    # Down to CI alone, then opened and saved again unchanged.
    for row in permission_editor.ROWS:
        page.select_option(f"{EDITOR} select[name='{row.key}']",
                           registry.ORG_CI if row.key == registry.ORG_CI else "")
    _save(page)
    assert _stored(server, "deploy-bot") == {registry.ORG_CI}
    page.goto(server.url("/organizations/acme/integrations/deploy-bot"))
    assert page.locator("select[name='org:ci']").input_value() == registry.ORG_CI
    _save(page)
    assert _stored(server, "deploy-bot") == {registry.ORG_CI}
    expect(page.locator("#scopes")).to_have_text("org:ci")

    # A token made on the page creates releases, and may not touch issues.
    page.fill("#new-token-form input[name=name]", "production")
    page.click("#new-token-form button[type=submit]")
    secret = page.locator("[data-testid=new-token]").inner_text().strip()
    assert secret.startswith("sgi_")
    auth = {"Authorization": f"Bearer {secret}"}
    made = httpx.post(server.url("/api/0/organizations/acme/releases/"), headers=auth,
                      json={"version": "1.0.0", "projects": ["web"]}, timeout=10)
    assert made.status_code == 201, made.text
    refused = httpx.put(server.url("/api/0/organizations/acme/issues/1/"), headers=auth,
                        json={"status": "resolved"}, timeout=10)
    assert refused.status_code == 403
    page.goto(server.url("/organizations/acme/integrations/deploy-bot"))
    assert secret not in page.content()
