"""The audit log of agent tokens: every security event is recorded, readable with
``org:write`` only, filterable, and never holds a secret.

Events are produced through the real HTTP endpoints and pages (and the real CLI for key
rotation), then read back both through ``GET .../audit-logs/`` and straight from the
``audit_events`` table.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import spec
from scopegate.cli.main import app as cli_app
from scopegate.core.roles import Role
from scopegate.services import directory
from scopegate.store.models import AuditEvent
from scopegate.web.cookies import SESSION_COOKIE
from support.agent import agent_token_for, approve_via_api
from support.http import bearer, login
from support.world import World, build_world_quick, user_token

MEMBER = World.email("member")
MANAGER = World.email("manager")
AUDIT = "/api/0/organizations/acme/audit-logs/"


@pytest.fixture
def world(db: Session) -> World:
    return build_world_quick(db)


def audit_rows(db: Session) -> list[AuditEvent]:
    db.commit()  # end any read transaction: see what the app committed
    db.expire_all()
    return list(db.scalars(select(AuditEvent).order_by(AuditEvent.id)))


class Scenario:
    """Produce one of each agent event through HTTP, remembering every secret used."""

    def __init__(self, client: TestClient, db: Session, world: World) -> None:
        self.secrets: dict[str, str] = {}
        directory.add_member(db, directory.get_org(db, "globex"),
                             directory.get_user(db, world.users["member"]), Role.MEMBER)
        db.commit()
        person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
        self.secrets["user token"] = person
        issue = f"/api/0/organizations/acme/issues/{world.issue_ids[0]}/"

        agent = agent_token_for(client, bearer(person), sessionId="audit-1", agent="claude")
        self.secrets["agent token"] = agent
        assert client.put(issue, json={"status": "resolved"},
                          headers=bearer(agent)).status_code == 403          # challenge
        assert client.get("/api/0/organizations/globex/issues/",
                          headers=bearer(agent)).status_code == 404          # cross-org

        csrf = login(client, MEMBER)
        self.secrets["session cookie"] = client.cookies[SESSION_COOKIE]
        self.secrets["csrf token"] = csrf
        assert approve_via_api(client, csrf, ["event:write"], session="audit-1",
                               agent="claude").status_code == 201            # approve
        writer = agent_token_for(client, bearer(person), sessionId="audit-1")
        self.secrets["writer token"] = writer
        assert client.put(issue, json={"status": "resolved"},
                          headers=bearer(writer)).status_code == 200
        denied = client.post("/organizations/acme/agent/approve", data={
            "csrf_token": csrf, "session": "audit-2", "scopes": ["event:write"],
            "decision": "deny", "agent": "claude"})
        assert denied.status_code == 200, denied.text                       # deny
        assert client.delete("/api/0/organizations/acme/agent/sessions/audit-1/",
                             headers=bearer(person)).status_code == 204     # revoke_session
        client.cookies.clear()


def test_every_agent_event_is_recorded(
    client: TestClient, app: FastAPI, db: Session, world: World, cli_env: None
) -> None:
    Scenario(client, db, world)
    result = CliRunner().invoke(cli_app, ["keys", "rotate"])
    assert result.exit_code == 0, result.output

    rows = audit_rows(db)
    by_event: dict[str, list[AuditEvent]] = {}
    for row in rows:
        by_event.setdefault(row.event, []).append(row)
    member, acme = world.users["member"], world.orgs["acme"]

    mints = by_event["agent.mint"]
    assert len(mints) == 2
    assert {m.session_id for m in mints} == {"audit-1"}
    assert all(m.user_id == member and m.org_id == acme for m in mints)
    assert mints[0].agent == "claude"
    assert mints[0].scopes == spec.READ_SCOPES & spec.ROLE_SCOPES["member"]
    assert "event:write" in mints[1].scopes

    [challenge] = by_event["agent.challenge"]
    assert (challenge.org_id, challenge.user_id, challenge.session_id) == (acme, member,
                                                                           "audit-1")
    assert challenge.scopes == {"event:write", "event:admin"}
    assert challenge.detail.startswith("PUT /api/0/organizations/acme/issues/")

    [cross] = by_event["access.cross_org"]
    assert (cross.org_id, cross.user_id, cross.session_id) == (acme, member, "audit-1")
    assert str(world.orgs["globex"]) in cross.detail

    [approve] = by_event["agent.approve"]
    assert (approve.org_id, approve.user_id, approve.session_id) == (acme, member, "audit-1")
    assert approve.scopes == {"event:write"}
    assert approve.agent == "claude"

    [deny] = by_event["agent.deny"]
    assert (deny.org_id, deny.user_id, deny.session_id) == (acme, member, "audit-2")
    assert deny.scopes == {"event:write"}

    [revoke] = by_event["agent.revoke_session"]
    assert (revoke.org_id, revoke.user_id, revoke.session_id) == (acme, member, "audit-1")

    [rotate] = by_event["keys.rotate"]
    assert rotate.org_id is None
    keys = app.state.runtime.keys
    keys.load()
    assert rotate.detail == f"kid={keys.active().kid}"

    # Every HTTP event names where it came from (the test client's address and agent).
    for row in rows:
        if row.event != "keys.rotate":
            assert row.ip == "testclient", row.event
            assert row.user_agent, row.event


def test_the_audit_log_needs_org_write_and_filters(
    client: TestClient, db: Session, world: World
) -> None:
    Scenario(client, db, world)
    member = bearer(user_token(db, MEMBER, spec.ALL_SCOPES))
    refused = client.get(AUDIT, headers=member)
    assert refused.status_code == 403, refused.text
    assert "org:write" in refused.headers["www-authenticate"]
    # A manager's token without org:write is refused too: scopes ∩ role.
    manager_read = bearer(user_token(db, MANAGER, {"org:read"}))
    assert client.get(AUDIT, headers=manager_read).status_code == 403
    # Other organizations never see acme's events.
    outsider = bearer(user_token(db, "owner@globex.test", {"org:write"}))
    assert client.get(AUDIT, headers=outsider).status_code == 404

    manager = bearer(user_token(db, MANAGER, {"org:write"}))
    everything = client.get(AUDIT, headers=manager, params={"perPage": 200})
    assert everything.status_code == 200, everything.text
    events = [row["event"] for row in everything.json()]
    assert {"agent.mint", "agent.challenge", "agent.approve", "agent.deny",
            "agent.revoke_session", "access.cross_org"} <= set(events)
    ids = [int(row["id"]) for row in everything.json()]
    assert ids == sorted(ids, reverse=True), "newest first"

    mints = client.get(AUDIT, headers=manager, params={"event": "agent.mint"}).json()
    assert len(mints) == 2
    assert {row["event"] for row in mints} == {"agent.mint"}
    assert {row["sessionId"] for row in mints} == {"audit-1"}

    session_two = client.get(AUDIT, headers=manager, params={"sessionId": "audit-2"}).json()
    assert [row["event"] for row in session_two] == ["agent.deny"]
    assert client.get(AUDIT, headers=manager, params={"sessionId": "nobody"}).json() == []

    both = client.get(AUDIT, headers=manager,
                      params={"event": "agent.approve", "sessionId": "audit-1"}).json()
    assert [row["event"] for row in both] == ["agent.approve"]
    assert both[0]["scopes"] == ["event:write"]
    assert both[0]["userId"] == str(world.users["member"])

    page = client.get(AUDIT, headers=manager, params={"perPage": 2, "page": 2}).json()
    assert [row["id"] for row in page] == [row["id"] for row in everything.json()[2:4]]
    unknown = client.get(AUDIT, headers=manager, params={"event": "agent.nope"})
    assert unknown.status_code == 400


def test_no_secret_reaches_the_audit_log(
    client: TestClient, db: Session, world: World
) -> None:
    scenario = Scenario(client, db, world)
    manager = user_token(db, MANAGER, {"org:write"})
    scenario.secrets["manager token"] = manager
    listed = client.get(AUDIT, headers=bearer(manager), params={"perPage": 200})
    assert listed.status_code == 200

    needles = {}
    for name, secret in scenario.secrets.items():
        needles[name] = secret
        if secret.startswith("sga_"):
            _, payload, signature = secret[4:].split(".")
            needles[f"{name} signature"] = signature
            needles[f"{name} payload"] = payload
        elif secret.startswith("sgu_"):
            needles[f"{name} without prefix"] = secret[4:]
            needles[f"{name} head"] = secret[:16]
    rows = audit_rows(db)
    assert len(rows) >= 7
    columns = [attribute.key for attribute in AuditEvent.__mapper__.column_attrs]
    found = [
        (row.id, row.event, column, name)
        for row in rows
        for column in columns
        for name, needle in needles.items()
        if needle in str(getattr(row, column))
    ]
    assert not found, found
    body = listed.text
    assert not [name for name, needle in needles.items() if needle in body]
