"""A person approves (or denies) an agent's write in Chromium, and revokes the session.

Chromium drives the real pages served by uvicorn on loopback (``live_server``); httpx
plays the agent: it mints tokens, meets the ``insufficient_scope`` challenge whose
approval URL the person then opens, and checks what its next token may do.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

import spec
from scopegate.store.models import AuditEvent, WriteGrant
from scopegate.store.types import utcnow
from support.live_server import LiveServer
from support.settings import PASSWORD
from support.world import World, build_world_quick, user_token

pytestmark = pytest.mark.browser

MEMBER = World.email("member")
AGENT_NAME = "Claude Code"
#: Set SCOPEGATE_SCREENSHOTS=/some/dir to keep screenshots of each step.
SCREENSHOTS = os.environ.get("SCOPEGATE_SCREENSHOTS")


@pytest.fixture
def world(server: LiveServer) -> World:
    with server.app.state.runtime.factory() as session:
        return build_world_quick(session)


def _shot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, f"agent-{name}.png"), full_page=True)


class Agent:
    """The agent's side, over plain HTTP with its person's user token."""

    def __init__(self, server: LiveServer, world: World, session_id: str) -> None:
        self.server = server
        self.world = world
        self.session_id = session_id
        with server.app.state.runtime.factory() as db:
            self.person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])

    def mint(self) -> dict:
        response = httpx.post(
            self.server.url("/api/0/organizations/acme/agent/token/"),
            json={"sessionId": self.session_id, "agent": AGENT_NAME},
            headers={"Authorization": f"Bearer {self.person}"}, timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()

    def resolve(self, token: str) -> httpx.Response:
        return httpx.put(
            self.server.url(f"/api/0/organizations/acme/issues/{self.world.issue_ids[0]}/"),
            json={"status": "resolved"}, headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    def approval_url(self) -> str:
        """Meet the challenge; return the approval URL it carries."""
        refused = self.resolve(self.mint()["token"])
        assert refused.status_code == 403, refused.text
        url = refused.json()["approval"]["url"]
        assert url.startswith(self.server.base_url + "/")
        return url

    def grants(self) -> list[WriteGrant]:
        with self.server.app.state.runtime.factory() as db:
            return list(db.scalars(select(WriteGrant).where(
                WriteGrant.session_id == self.session_id)))


def log_in_to(page: Page, server: LiveServer, url: str) -> None:
    """Open ``url`` logged out: the login page takes us there afterwards."""
    page.goto(url)
    expect(page).to_have_url(re.compile(re.escape(server.url("/login?next=")) + ".+"))
    page.fill("input[name=email]", MEMBER)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(lambda current: current == url)


def test_approve_in_the_browser_lets_the_next_token_write(
    server: LiveServer, world: World, page: Page
) -> None:
    agent = Agent(server, world, "browser-approve")
    url = agent.approval_url()
    log_in_to(page, server, url)
    _shot(page, "1-approval-page")

    expect(page.locator("h1")).to_contain_text("Allow an agent to make changes?")
    expect(page.get_by_test_id("agent-name")).to_have_text(AGENT_NAME)
    expect(page.get_by_test_id("session-id")).to_have_text("browser-approve")
    intro = page.locator("section.approve > p").first
    expect(intro).to_contain_text("Acme")
    expect(intro).to_contain_text("acme")
    rows = page.locator("li.scope-row")
    expect(rows).to_have_count(1)
    row = page.locator("li.scope-row[data-scope='event:write']")
    expect(row.locator("code.scope")).to_have_text("event:write")
    expect(row).to_contain_text("Resolve, ignore and reassign issues.")
    expect(row.locator("ul.actions li")).to_have_text(["resolve, ignore and reassign issues"])

    page.select_option("select[name=lifetime]", "15m")
    with page.expect_navigation():
        page.get_by_role("button", name="Approve").click()
    _shot(page, "2-approved")
    decision = page.get_by_test_id("decision")
    expect(decision).to_have_attribute("data-approved", "yes")
    expect(decision.locator("h1")).to_have_text("Approved")
    expect(decision).to_contain_text("event:write")
    expect(decision).to_contain_text("15 minutes")

    [grant] = agent.grants()
    assert grant.user_id == world.users["member"]
    assert grant.scopes == frozenset({"event:write"})
    assert grant.agent == AGENT_NAME
    remaining = grant.expires_at - utcnow()
    assert timedelta(minutes=14) < remaining <= timedelta(minutes=15)

    writer = agent.mint()
    assert "event:write" in writer["scopes"]
    resolved = agent.resolve(writer["token"])
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"


def test_deny_in_the_browser_grants_nothing(
    server: LiveServer, world: World, page: Page
) -> None:
    agent = Agent(server, world, "browser-deny")
    url = agent.approval_url()
    log_in_to(page, server, url)
    with page.expect_navigation():
        page.get_by_role("button", name="Deny").click()
    _shot(page, "3-denied")
    decision = page.get_by_test_id("decision")
    expect(decision).to_have_attribute("data-approved", "no")
    expect(decision.locator("h1")).to_have_text("Denied")
    expect(decision).to_contain_text("browser-deny")

    assert agent.grants() == []
    assert agent.resolve(agent.mint()["token"]).status_code == 403
    with server.app.state.runtime.factory() as db:
        denials = db.scalars(select(AuditEvent).where(
            AuditEvent.event == "agent.deny", AuditEvent.session_id == "browser-deny")).all()
    assert len(denials) == 1


def test_the_sessions_page_revokes_a_session(
    server: LiveServer, world: World, page: Page
) -> None:
    agent = Agent(server, world, "browser-revoke")
    log_in_to(page, server, agent.approval_url())
    with page.expect_navigation():
        page.get_by_role("button", name="Approve").click()
    live = agent.mint()["token"]
    assert agent.resolve(live).status_code == 200

    page.goto(server.url("/agent/sessions"))
    _shot(page, "4-sessions")
    row = page.locator("#sessions tbody tr[data-session='browser-revoke']")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("acme")
    expect(row).to_contain_text(AGENT_NAME)
    expect(row.locator("code.scope")).to_have_text(["event:write"])

    with page.expect_navigation():
        row.get_by_role("button", name="Revoke").click()
    expect(page).to_have_url(server.url("/agent/sessions"))
    _shot(page, "5-revoked")
    # The session minted recently, so it stays listed, read-only now.
    row = page.locator("#sessions tbody tr[data-session='browser-revoke']")
    expect(row).to_contain_text("read-only")
    expect(row.locator("code.scope")).to_have_count(0)

    assert agent.grants() == []
    refused = agent.resolve(live)
    assert refused.status_code == 401, refused.text
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
