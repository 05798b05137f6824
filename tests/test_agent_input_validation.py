"""Every path that records or shows an agent session id or agent name validates it alike.

Attacks from the outside run: denying an approval with an invalid session id (markup,
bidi control characters) was accepted and written to the audit log while approving the
same id was a 400; the agent name on the approval page was free text from the link,
shown as if it were a fact. Now one rule (``grants.check_session_and_agent``) runs on
approve, deny, revoke and the page; the name is bounded, restricted to a plain character
set, and shown as the agent's own claim.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import spec
from scopegate.store.models import AuditEvent, WriteGrant
from support.agent import approve_via_api, mint_agent
from support.http import bearer, login
from support.world import World, user_token

MEMBER = World.email("member")
APPROVE_PAGE = "/organizations/acme/agent/approve"
BAD_SESSIONS = ["<b>s1</b>", "s1\u202eevil", "s 1", "s1\n"]
BAD_AGENTS = ["<script>x</script>", "claude\u202egpj.exe", "a" * 129, " padded", "tab\there",
              "null\x00byte"]


def audit_count(db: Session, event: str) -> int:
    db.commit()
    return db.scalar(select(func.count()).select_from(AuditEvent)
                     .where(AuditEvent.event == event)) or 0


def decide(client: TestClient, csrf: str, decision: str, session: str = "s1",
           agent: str = "") -> int:
    return client.post(APPROVE_PAGE, data={
        "csrf_token": csrf, "session": session, "decision": decision,
        "scopes": ["event:write"], "agent": agent, "lifetime": "15m",
    }).status_code


@pytest.mark.parametrize("session", BAD_SESSIONS)
def test_denial_with_an_invalid_session_id_is_refused_and_not_audited(
    client: TestClient, db: Session, world: World, session: str
) -> None:
    csrf = login(client, MEMBER)
    assert decide(client, csrf, "deny", session=session) == 400
    assert decide(client, csrf, "approve", session=session) == 400
    assert audit_count(db, "agent.deny") == 0
    # The same form with a valid id is recorded: the refusal above is about the id.
    assert decide(client, csrf, "deny", session="s1") == 200
    assert audit_count(db, "agent.deny") == 1


@pytest.mark.parametrize("agent", BAD_AGENTS)
def test_invalid_agent_names_are_refused_on_every_path(
    client: TestClient, db: Session, world: World, agent: str
) -> None:
    csrf = login(client, MEMBER)
    page = client.get(APPROVE_PAGE + "?" + urlencode(
        {"session": "s1", "scopes": "event:write", "agent": agent}))
    assert page.status_code in (400, 422)
    assert agent not in page.text
    assert decide(client, csrf, "deny", agent=agent) == 400
    assert decide(client, csrf, "approve", agent=agent) == 400
    assert approve_via_api(client, csrf, ["event:write"], agent=agent).status_code == 400
    person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    assert mint_agent(client, bearer(person), agent=agent).status_code == 400
    assert audit_count(db, "agent.deny") == 0
    assert audit_count(db, "agent.approve") == 0
    assert audit_count(db, "agent.mint") == 0
    db.commit()
    assert db.scalar(select(func.count()).select_from(WriteGrant)) == 0


def test_agent_name_on_the_approval_page_is_shown_as_a_claim(
    client: TestClient, db: Session, world: World
) -> None:
    login(client, MEMBER)
    name = "Claude Code (v2.1) @laptop"
    page = client.get(APPROVE_PAGE + "?" + urlencode(
        {"session": "s1", "scopes": "event:write", "agent": name}))
    assert page.status_code == 200
    assert "calls itself" in page.text and "has not verified" in page.text
    assert "Claude Code (v2.1) @laptop" in page.text


def test_a_valid_agent_name_is_accepted_everywhere(
    client: TestClient, db: Session, world: World
) -> None:
    """Positive control for the refusals above: the same paths take a plain name."""
    csrf = login(client, MEMBER)
    name = "Claude Code (v2.1) @laptop"
    assert decide(client, csrf, "deny", agent=name) == 200
    assert approve_via_api(client, csrf, ["event:write"], agent=name).status_code == 201
    person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    assert mint_agent(client, bearer(person), agent=name).status_code == 201
