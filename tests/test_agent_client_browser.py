"""The agent client's approval loop end to end, the person approving in Chromium.

``AgentClient`` (the agent) meets ``insufficient_scope`` on a write; its ``on_approval``
callback plays the person: Chromium opens the approval URL, logs in on the way, and
clicks Approve. The client then sees the grant, mints a writer token and retries, so the
one ``put`` call returns the resolved issue.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

import spec
from scopegate.client import AgentClient, Approval
from scopegate.store.models import Issue, WriteGrant
from support.live_server import LiveServer
from support.settings import PASSWORD
from support.world import World, build_world_quick, user_token

pytestmark = pytest.mark.browser

MEMBER = World.email("member")
AGENT_NAME = "client-agent"
SESSION = "client-browser"


def approve_in_browser(page: Page, server: LiveServer, approval: Approval) -> None:
    """The person opens the approval URL (logged out: the login page comes first, then
    back to the approval), checks what is asked, and approves."""
    page.goto(approval.url)
    expect(page).to_have_url(re.compile(re.escape(server.url("/login?next=")) + ".+"))
    page.fill("input[name=email]", MEMBER)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(lambda current: current == approval.url)
    expect(page.get_by_test_id("agent-name")).to_have_text(AGENT_NAME)
    expect(page.get_by_test_id("session-id")).to_have_text(SESSION)
    expect(page.locator("li.scope-row[data-scope='event:write']")).to_have_count(1)
    with page.expect_navigation():
        page.get_by_role("button", name="Approve").click()
    expect(page.get_by_test_id("decision")).to_have_attribute("data-approved", "yes")


def test_the_client_waits_for_a_browser_approval_then_writes(
    server: LiveServer, page: Page
) -> None:
    with server.app.state.runtime.factory() as db:
        world = build_world_quick(db)
        person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    issue_id = world.issue_ids[0]
    asked: list[Approval] = []

    def on_approval(approval: Approval) -> None:
        asked.append(approval)
        approve_in_browser(page, server, approval)

    with AgentClient(server.base_url, person, org="acme", session_id=SESSION,
                     agent=AGENT_NAME, on_approval=on_approval, approval_timeout=30,
                     poll_interval=0.1) as agent:
        listed = agent.get("organizations/acme/issues/")
        assert listed.status_code == 200, listed.text
        assert "event:write" not in agent.scopes

        resolved = agent.put(f"organizations/acme/issues/{issue_id}/",
                             json={"status": "resolved"})

    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    assert "event:write" in agent.scopes
    [approval] = asked
    assert approval.scopes == ("event:write",)
    assert approval.session_id == SESSION
    with server.app.state.runtime.factory() as db:
        assert db.scalar(select(Issue.status).where(Issue.id == issue_id)) == "resolved"
        [grant] = db.scalars(select(WriteGrant).where(WriteGrant.session_id == SESSION))
        assert grant.user_id == world.users["member"]
        assert grant.scopes == frozenset({"event:write"})
        assert grant.agent == AGENT_NAME
