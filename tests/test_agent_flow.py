"""Agent capability tokens end to end over HTTP, on SQLite and PostgreSQL.

The story the design tells: a person's agent mints a token with the person's user token,
reads freely, is refused a write with an ``insufficient_scope`` challenge that carries an
approval URL, the person approves in the browser (session + CSRF), and the agent's next
token can write. Around it: the mint endpoint's input rules, who may mint, and who may
approve.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

import spec
from scopegate.store.models import Issue, WriteGrant
from scopegate.store.types import utcnow
from scopegate.web.app import create_app
from support.agent import agent_token_for, approve_via_api, mint_agent
from support.http import bearer, login, parse_challenge
from support.settings import BASE_URL, make_settings
from support.world import World, build_world_quick, org_token, user_token

MEMBER = World.email("member")
OWNER = World.email("owner")
ADMIN = World.email("admin")
RESOLVE_ACTION = "resolve, ignore and reassign issues"
EVENT_WRITE_DESCRIPTION = "Resolve, ignore and reassign issues."
MEMBER_READS = spec.READ_SCOPES & spec.ROLE_SCOPES["member"]


@pytest.fixture
def world(db: Session) -> World:
    return build_world_quick(db)


def issue_path(issue_id: int, org: str = "acme") -> str:
    return f"/api/0/organizations/{org}/issues/{issue_id}/"


def resolve(client: TestClient, token: str, issue_id: int):
    return client.put(issue_path(issue_id), json={"status": "resolved"}, headers=bearer(token))


def fresh(db: Session) -> Session:
    """End ``db``'s transaction so the next read sees what the app committed (a SQLite
    read transaction keeps its snapshot)."""
    db.commit()
    db.expire_all()
    return db


def issue_status(db: Session, issue_id: int) -> str:
    fresh(db)
    status = db.scalar(select(Issue.status).where(Issue.id == issue_id))
    assert status is not None
    return status


def grant_count(db: Session, **where: object) -> int:
    fresh(db)
    stmt = select(func.count()).select_from(WriteGrant)
    for column, value in where.items():
        stmt = stmt.where(getattr(WriteGrant, column) == value)
    return db.scalar(stmt) or 0


def member_token(db: Session) -> str:
    return user_token(db, MEMBER, spec.ROLE_SCOPES["member"])


# --- the story ----------------------------------------------------------------------------


def test_read_then_challenge_then_approve_in_browser_then_write(
    client: TestClient, db: Session, world: World
) -> None:
    person = member_token(db)
    issue_id = world.issue_ids[0]

    minted = mint_agent(client, bearer(person), sessionId="agent-1", agent="claude")
    assert minted.status_code == 201, minted.text
    assert set(minted.json()["scopes"]) == MEMBER_READS
    agent = minted.json()["token"]

    listed = client.get("/api/0/organizations/acme/issues/", headers=bearer(agent))
    assert listed.status_code == 200, listed.text
    assert {row["id"] for row in listed.json()} == {str(i) for i in world.issue_ids}

    refused = resolve(client, agent, issue_id)
    assert refused.status_code == 403, refused.text
    challenge = parse_challenge(refused.headers.get("www-authenticate"))
    assert challenge["error"] == "insufficient_scope"
    assert "event:write" in challenge["scope"].split()
    approval = refused.json()["approval"]
    assert approval["sessionId"] == "agent-1"
    assert approval["scopes"] == ["event:write"]
    url = urlsplit(approval["url"])
    assert f"{url.scheme}://{url.netloc}" == BASE_URL
    assert url.path == "/organizations/acme/agent/approve"
    query = parse_qs(url.query)
    assert query["session"] == ["agent-1"]
    assert query["scopes"] == ["event:write"]
    assert query["agent"] == ["claude"]

    assert issue_status(db, issue_id) == "unresolved"
    assert grant_count(db) == 0, "a challenge must not store anything"

    csrf = login(client, MEMBER)
    page = client.get(f"{url.path}?{url.query}")
    assert page.status_code == 200, page.text
    assert 'data-scope="event:write"' in page.text
    assert EVENT_WRITE_DESCRIPTION in page.text
    assert RESOLVE_ACTION in page.text
    assert "claude" in page.text

    decided = client.post(
        url.path,
        data={"csrf_token": csrf, "session": "agent-1", "agent": "claude",
              "scopes": ["event:write"], "lifetime": "15m", "decision": "approve"},
    )
    assert decided.status_code == 201, decided.text
    assert 'data-approved="yes"' in decided.text
    assert grant_count(db, session_id="agent-1", user_id=world.users["member"]) == 1

    # The old token is immutable: still read-only. A new one carries the grant.
    assert resolve(client, agent, issue_id).status_code == 403
    assert issue_status(db, issue_id) == "unresolved"
    writer = agent_token_for(client, bearer(person), sessionId="agent-1")
    resolved = resolve(client, writer, issue_id)
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    assert issue_status(db, issue_id) == "resolved"


def test_a_grant_is_bound_to_its_approver(client: TestClient, db: Session, world: World) -> None:
    """A link forwarded to someone else only approves for *their* session: inert."""
    csrf = login(client, ADMIN)
    approved = approve_via_api(client, csrf, ["event:write"], session="agent-1")
    assert approved.status_code == 201, approved.text
    assert grant_count(db, user_id=world.users["admin"], session_id="agent-1") == 1

    agent = agent_token_for(client, bearer(member_token(db)), sessionId="agent-1")
    assert resolve(client, agent, world.issue_ids[0]).status_code == 403
    assert grant_count(db, user_id=world.users["member"]) == 0


# --- the mint endpoint --------------------------------------------------------------------


def test_mint_response_shape_and_default_lifetime(
    client: TestClient, db: Session, world: World
) -> None:
    before = int(time.time())
    response = mint_agent(client, bearer(member_token(db)), sessionId="shape-1")
    after = int(time.time())
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"token", "expiresAt", "scopes", "sessionId"}
    assert body["token"].startswith("sga_")
    assert body["sessionId"] == "shape-1"
    claims = jwt.decode(body["token"][4:], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 300
    assert before <= claims["iat"] <= after
    assert claims["sid"] == "shape-1"
    assert claims["sub"] == str(world.users["member"])
    assert claims["org"] == world.orgs["acme"]
    assert sorted(claims["scopes"]) == sorted(body["scopes"])
    expires = body["expiresAt"].replace("Z", "+00:00")
    assert int(datetime.fromisoformat(expires).timestamp()) == claims["exp"]


def test_mint_ttl_bounds(client: TestClient, db: Session, world: World) -> None:
    person = bearer(member_token(db))
    for ttl in (3601, 29, 10**9):
        response = mint_agent(client, person, ttlSeconds=ttl)
        assert response.status_code == 400, (ttl, response.text)
        assert "ttlSeconds" in response.text
    longest = mint_agent(client, person, ttlSeconds=3600)
    assert longest.status_code == 201, longest.text
    claims = jwt.decode(longest.json()["token"][4:], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600


def test_mint_ttl_is_bounded_by_the_configured_maximum(
    database_url: str, world: World, db: Session
) -> None:
    """The server's own maximum (here 600 s) bounds ``ttlSeconds`` too, not only the
    schema's 3600."""
    person = bearer(member_token(db))
    settings = make_settings(database_url, agent_token_max_ttl_seconds=600)
    app = create_app(settings)
    try:
        with TestClient(app, base_url=BASE_URL) as short:
            over = mint_agent(short, person, ttlSeconds=601)
            assert over.status_code == 400, over.text
            assert "ttlSeconds" in over.text
            at_most = mint_agent(short, person, ttlSeconds=600)
            assert at_most.status_code == 201, at_most.text
    finally:
        app.state.runtime.engine.dispose()


INVALID_SESSION_IDS = ["", "x" * 129, "has space", "ünïcode", "tab\tbed", "slash/es", "s1\n",
                       None, 42]


def test_invalid_session_ids_are_refused_everywhere(
    client: TestClient, db: Session, world: World
) -> None:
    """Mint, approve (API and page) and revoke all refuse a malformed session id with 400
    naming it, and store nothing."""
    person = bearer(member_token(db))
    for session_id in INVALID_SESSION_IDS:
        response = mint_agent(client, person, sessionId=session_id)
        assert response.status_code == 400, (session_id, response.text)
        assert "sessionId" in response.text, session_id
    csrf = login(client, MEMBER)
    for session_id in INVALID_SESSION_IDS:
        response = approve_via_api(client, csrf, ["event:write"], session=session_id)
        assert response.status_code == 400, (session_id, response.text)
        assert "sessionId" in response.text, session_id
    for session_id in ("", "x" * 129, "has space", "s1\n"):
        page = client.get("/organizations/acme/agent/approve",
                          params={"session": session_id, "scopes": "event:write"})
        assert page.status_code == 400, (session_id, page.text)
        form = client.post("/organizations/acme/agent/approve", data={
            "csrf_token": csrf, "session": session_id, "scopes": ["event:write"],
            "decision": "approve"})
        assert form.status_code in (400, 422), (session_id, form.status_code)
    for quoted in ("has%20space", "s1%0A", "%C3%BC"):
        revoke = client.delete(f"/api/0/organizations/acme/agent/sessions/{quoted}/",
                               headers=person)
        assert revoke.status_code == 400, (quoted, revoke.text)
    assert grant_count(db) == 0


def test_mint_accepts_the_longest_session_id(client: TestClient, db: Session, world: World) -> None:
    longest = "a.b_c:d@e-" * 12 + "abcdefgh"
    assert len(longest) == 128
    response = mint_agent(client, bearer(member_token(db)), sessionId=longest)
    assert response.status_code == 201, response.text
    assert response.json()["sessionId"] == longest


def test_mint_requested_scopes_are_validated(
    client: TestClient, db: Session, world: World
) -> None:
    person = bearer(member_token(db))
    unknown = mint_agent(client, person, requestedScopes=["event:read", "event:destroy"])
    assert unknown.status_code == 400, unknown.text
    assert "requestedScopes" in unknown.text

    too_many = mint_agent(client, person, requestedScopes=["event:read"] * 65)
    assert too_many.status_code == 400, too_many.text
    assert "requestedScopes" in too_many.text

    most = mint_agent(client, person, requestedScopes=["event:read"] * 64)
    assert most.status_code == 201, most.text
    assert most.json()["scopes"] == ["event:read"]

    nothing = mint_agent(client, person, requestedScopes=[])
    assert nothing.status_code == 201, nothing.text
    assert nothing.json()["scopes"] == []

    missing_session = client.post("/api/0/organizations/acme/agent/token/", json={},
                                  headers=person)
    assert missing_session.status_code == 400
    assert "sessionId" in missing_session.text


def test_agent_tokens_can_be_turned_off_for_an_org(
    client: TestClient, db: Session, world: World
) -> None:
    person = bearer(member_token(db))
    live = agent_token_for(client, person)
    assert client.get("/api/0/organizations/acme/issues/", headers=bearer(live)).status_code == 200
    owner = bearer(user_token(db, OWNER, {"org:write"}))
    turned_off = client.put("/api/0/organizations/acme/", json={"agentTokensEnabled": False},
                            headers=owner)
    assert turned_off.status_code == 200, turned_off.text
    assert turned_off.json()["agentTokensEnabled"] is False

    refused = mint_agent(client, person)
    assert refused.status_code == 403, refused.text
    assert "turned off" in refused.json()["detail"]
    # Tokens minted before are stopped too, as an RFC 6750 invalid_token.
    stopped = client.get("/api/0/organizations/acme/issues/", headers=bearer(live))
    assert stopped.status_code == 401, stopped.text
    assert 'error="invalid_token"' in stopped.headers["www-authenticate"]
    # Other organizations are unaffected.
    outsider = bearer(user_token(db, "owner@globex.test", {"event:read"}))
    assert mint_agent(client, outsider, org="globex").status_code == 201


def test_only_a_persons_credential_may_mint(client: TestClient, db: Session, world: World) -> None:
    by_org_token = mint_agent(client, bearer(org_token(db, "acme")))
    assert by_org_token.status_code == 403, by_org_token.text

    agent = agent_token_for(client, bearer(member_token(db)))
    by_agent = mint_agent(client, bearer(agent), sessionId="child")
    assert by_agent.status_code == 403, by_agent.text

    anonymous = client.post("/api/0/organizations/acme/agent/token/", json={"sessionId": "s1"})
    assert anonymous.status_code == 401

    csrf = login(client, MEMBER)
    by_session = client.post("/api/0/organizations/acme/agent/token/",
                             json={"sessionId": "s1"}, headers={"X-CSRF-Token": csrf})
    assert by_session.status_code == 201, by_session.text


def test_mint_for_an_org_the_person_is_not_in_is_404(
    client: TestClient, db: Session, world: World
) -> None:
    response = mint_agent(client, bearer(member_token(db)), org="globex")
    assert response.status_code == 404, response.text


# --- approving ----------------------------------------------------------------------------


def test_approve_api_caps_at_the_approver_and_reports_dropped_scopes(
    client: TestClient, db: Session, world: World
) -> None:
    csrf = login(client, MEMBER)
    response = approve_via_api(client, csrf, ["event:write", "project:admin"], session="cap-1",
                               lifetime="15m")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["scopes"] == ["event:write"]
    assert body["droppedScopes"] == ["project:admin"]
    assert body["sessionId"] == "cap-1"
    assert body["expiresIn"] == 15 * 60
    row = fresh(db).scalar(select(WriteGrant).where(WriteGrant.session_id == "cap-1"))
    assert row is not None
    assert row.user_id == world.users["member"]
    assert row.scopes == frozenset({"event:write"})

    # Holding none of them is refused, and stores nothing.
    none_held = approve_via_api(client, csrf, ["project:admin"], session="cap-2")
    assert none_held.status_code == 403, none_held.text
    assert grant_count(db, session_id="cap-2") == 0

    # The token minted for the session carries the grant (and only what was stored).
    agent = mint_agent(client, bearer(member_token(db)), sessionId="cap-1")
    assert set(agent.json()["scopes"]) == MEMBER_READS | {"event:write"}


def test_approving_again_merges_into_one_row(client: TestClient, db: Session, world: World) -> None:
    csrf = login(client, OWNER)
    first = approve_via_api(client, csrf, ["event:write"], session="merge-1")
    second = approve_via_api(client, csrf, ["project:write", "org:ci"], session="merge-1")
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert second.json()["scopes"] == ["project:write", "event:write"]
    assert second.json()["droppedScopes"] == ["org:ci"]
    assert grant_count(db, session_id="merge-1") == 1


def test_an_expired_grant_is_not_honored_and_is_replaced_not_merged(
    client: TestClient, db: Session, world: World
) -> None:
    person = bearer(member_token(db))
    csrf = login(client, MEMBER)
    assert approve_via_api(client, csrf, ["event:write"], session="old").status_code == 201
    assert "event:write" in mint_agent(client, person, sessionId="old").json()["scopes"]
    fresh(db).execute(update(WriteGrant).where(WriteGrant.session_id == "old")
                      .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert set(mint_agent(client, person, sessionId="old").json()["scopes"]) == MEMBER_READS

    again = approve_via_api(client, csrf, ["alerts:write"], session="old")
    assert again.status_code == 201, again.text
    assert again.json()["scopes"] == ["alerts:write"], "an expired grant must not be revived"
    assert grant_count(db, session_id="old") == 1
    scopes = set(mint_agent(client, person, sessionId="old").json()["scopes"])
    assert scopes == MEMBER_READS | {"alerts:write"}


def test_grant_lifetime_is_capped_by_the_org(
    client: TestClient, db: Session, world: World
) -> None:
    owner = bearer(user_token(db, OWNER, {"org:write"}))
    capped = client.put("/api/0/organizations/acme/", json={"maxGrantSeconds": 600},
                        headers=owner)
    assert capped.status_code == 200, capped.text
    csrf = login(client, MEMBER)
    approved = approve_via_api(client, csrf, ["event:write"], session="cap", lifetime="24h")
    assert approved.status_code == 201, approved.text
    assert approved.json()["expiresIn"] == 600
    row = fresh(db).scalar(select(WriteGrant).where(WriteGrant.session_id == "cap"))
    assert row is not None
    assert row.expires_at <= utcnow() + timedelta(seconds=600)
    bad = approve_via_api(client, csrf, ["event:write"], session="cap", lifetime="forever")
    assert bad.status_code == 400, bad.text


def test_no_approval_url_when_the_person_lacks_the_scope_too(
    client: TestClient, db: Session, world: World
) -> None:
    """A member's agent changing org settings: no approval can help, so none is offered."""
    agent = agent_token_for(client, bearer(member_token(db)), sessionId="futile")
    refused = client.put("/api/0/organizations/acme/", json={"name": "Hijacked"},
                         headers=bearer(agent))
    assert refused.status_code == 403, refused.text
    assert parse_challenge(refused.headers["www-authenticate"])["error"] == "insufficient_scope"
    assert refused.json()["approval"] is None
    # Nor does the approval page let the member approve it.
    login(client, MEMBER)
    page = client.get("/organizations/acme/agent/approve",
                      params={"session": "futile", "scopes": "org:write"})
    assert page.status_code == 200
    assert "You do not hold this scope" in page.text
    assert re.search(r'value="approve"\s+disabled', page.text)


@pytest.mark.parametrize("kind", ["user_token", "agent_token"])
def test_approving_with_a_bearer_token_is_refused(
    client: TestClient, db: Session, world: World, kind: str
) -> None:
    person = member_token(db)
    token = person if kind == "user_token" else agent_token_for(client, bearer(person))
    response = client.post(
        "/api/0/organizations/acme/agent/approve/",
        json={"sessionId": "s1", "scopes": ["event:write"]}, headers=bearer(token),
    )
    assert response.status_code == 403, response.text
    # Not even with a session cookie and CSRF beside it: the page form refuses tokens too.
    csrf = login(client, MEMBER)
    form = client.post(
        "/organizations/acme/agent/approve",
        data={"csrf_token": csrf, "session": "s1", "scopes": ["event:write"],
              "decision": "approve"},
        headers=bearer(token),
    )
    assert form.status_code == 403, form.text
    assert grant_count(db) == 0


def test_approving_without_csrf_is_refused(client: TestClient, db: Session, world: World) -> None:
    csrf = login(client, MEMBER)
    body = {"sessionId": "s1", "scopes": ["event:write"]}
    path = "/api/0/organizations/acme/agent/approve/"
    assert client.post(path, json=body).status_code == 403
    assert client.post(path, json=body, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    form = {"session": "s1", "scopes": ["event:write"], "decision": "approve"}
    assert client.post("/organizations/acme/agent/approve", data=form).status_code == 403
    assert client.post("/organizations/acme/agent/approve",
                       data={**form, "csrf_token": csrf[::-1]}).status_code == 403
    assert grant_count(db) == 0
    # The same request with the CSRF token goes through: the refusals were about CSRF.
    assert approve_via_api(client, csrf, ["event:write"]).status_code == 201
