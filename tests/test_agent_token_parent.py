"""An agent token dies with the credential that minted it (its parent).

Attacks from the outside run: an agent token kept working after the user token that
minted it was revoked, after that token expired, and after the browser session that
minted it logged out. Now a revoked or logged-out parent puts the parent on the deny
list (every token it minted is refused at once in this process), and a token's ``exp``
is never later than its parent's own expiry. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

import spec
from scopegate.store.models import UserToken, WebSession
from scopegate.store.types import utcnow
from scopegate.web.app import create_app
from scopegate.web.cookies import CSRF_HEADER
from support.agent import agent_token_for
from support.http import bearer, login
from support.settings import BASE_URL, make_settings
from support.world import World, build_world_quick, user_token

MEMBER = World.email("member")
ISSUES = "/api/0/organizations/acme/issues/"


def reads(client: TestClient, agent: str) -> int:
    return client.get(ISSUES, headers=bearer(agent)).status_code


def claims_of(token: str) -> dict:
    return jwt.decode(token[4:], options={"verify_signature": False})


def token_id(db: Session, secret: str) -> int:
    db.commit()
    row = db.scalar(select(UserToken).where(UserToken.last_chars == secret[-4:]))
    assert row is not None
    return row.id


def test_agent_token_dies_with_revoked_parent_token(
    client: TestClient, db: Session, world: World
) -> None:
    parent = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    sibling = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    agent = agent_token_for(client, bearer(parent), sessionId="p-1")
    other = agent_token_for(client, bearer(sibling), sessionId="p-1")
    assert reads(client, agent) == 200

    revoked = client.delete(f"/api/0/api-tokens/{token_id(db, parent)}/", headers=bearer(sibling))
    assert revoked.status_code == 204

    response = client.get(ISSUES, headers=bearer(agent))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    # Only what that parent minted: the same person's same session through another token
    # still works.
    assert reads(client, other) == 200


def test_agent_token_dies_with_parent_token_revoked_on_the_account_page(
    client: TestClient, db: Session, world: World
) -> None:
    parent = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    agent = agent_token_for(client, bearer(parent), sessionId="p-2")
    assert reads(client, agent) == 200
    csrf = login(client, MEMBER)
    page = client.post(f"/account/tokens/{token_id(db, parent)}/revoke",
                       data={"csrf_token": csrf}, follow_redirects=False)
    assert page.status_code == 303
    assert reads(client, agent) == 401


def test_agent_token_dies_when_the_browser_session_that_minted_it_logs_out(
    client: TestClient, db: Session, world: World
) -> None:
    csrf = login(client, MEMBER)
    minted = client.post("/api/0/organizations/acme/agent/token/",
                         json={"sessionId": "p-3"}, headers={CSRF_HEADER: csrf})
    assert minted.status_code == 201, minted.text
    agent = minted.json()["token"]
    assert claims_of(agent)["par"].startswith("web_session:")
    # Another browser of the same person, and its agent token, stay alive.
    with TestClient(client.app, base_url=BASE_URL) as elsewhere:
        other_csrf = login(elsewhere, MEMBER)
        other = elsewhere.post("/api/0/organizations/acme/agent/token/",
                               json={"sessionId": "p-3"}, headers={CSRF_HEADER: other_csrf})
        assert other.status_code == 201
    other_agent = other.json()["token"]
    assert reads(client, agent) == 200

    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303

    assert reads(client, agent) == 401
    assert reads(client, other_agent) == 200


def test_agent_token_never_outlives_its_parent_token(
    client: TestClient, db: Session, world: World
) -> None:
    short = user_token(db, MEMBER, spec.ROLE_SCOPES["member"],
                       expires_at=utcnow() + timedelta(seconds=45))
    parent_expiry = db.scalar(select(UserToken.expires_at)
                              .where(UserToken.id == token_id(db, short)))
    db.commit()  # end the read snapshot before the app writes
    assert parent_expiry is not None
    capped = claims_of(agent_token_for(client, bearer(short), sessionId="p-4", ttlSeconds=600))
    assert capped["exp"] <= int(parent_expiry.timestamp())
    assert capped["exp"] - capped["iat"] <= 45

    # Positive control: a parent without an expiry gives the full requested lifetime.
    lasting = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    full = claims_of(agent_token_for(client, bearer(lasting), sessionId="p-4", ttlSeconds=600))
    assert full["exp"] - full["iat"] == 600


def test_agent_token_never_outlives_its_browser_session(database_url: str) -> None:
    app = create_app(make_settings(database_url, session_max_age_seconds=300))
    try:
        with app.state.runtime.factory() as setup:
            build_world_quick(setup)
        with TestClient(app, base_url=BASE_URL) as client:
            csrf = login(client, MEMBER)
            minted = client.post("/api/0/organizations/acme/agent/token/",
                                 json={"sessionId": "p-5", "ttlSeconds": 3600},
                                 headers={CSRF_HEADER: csrf})
            assert minted.status_code == 201, minted.text
            claims = claims_of(minted.json()["token"])
        with app.state.runtime.factory() as check:
            session_expiry = check.scalar(select(WebSession.expires_at))
        assert session_expiry is not None
        assert claims["exp"] <= int(session_expiry.timestamp())
        assert claims["exp"] - claims["iat"] <= 300
    finally:
        app.state.runtime.engine.dispose()


def test_logging_out_does_not_deny_the_next_session_of_the_same_browser(
    client: TestClient, db: Session, world: World
) -> None:
    """The deny entry names the ended session, not a row id the next session may reuse
    (SQLite hands a deleted highest rowid out again)."""
    csrf = login(client, MEMBER)
    assert client.post("/logout", data={"csrf_token": csrf},
                       follow_redirects=False).status_code == 303
    csrf = login(client, MEMBER)
    minted = client.post("/api/0/organizations/acme/agent/token/",
                         json={"sessionId": "p-6"}, headers={CSRF_HEADER: csrf})
    assert minted.status_code == 201, minted.text
    assert reads(client, minted.json()["token"]) == 200


def test_a_parent_revoked_in_one_process_stops_its_agent_tokens_in_another(
    database_url: str, request: pytest.FixtureRequest
) -> None:
    """The parent's deny entry is in the shared database: a second app on it (another
    process) that had the token cached as good refuses it once it has confirmed the
    changes, which its upkeep does twice per ``SCOPEGATE_CACHE_SECONDS`` (here the test
    asks at once; real processes and the Redis bus: ``tests/test_propagation.py``)."""
    apps = [create_app(make_settings(database_url)) for _ in range(2)]
    for app in apps:
        request.addfinalizer(app.state.runtime.engine.dispose)
    with TestClient(apps[0], base_url=BASE_URL) as here, \
            TestClient(apps[1], base_url=BASE_URL) as elsewhere, \
            apps[0].state.runtime.factory() as db:
        build_world_quick(db)
        parent = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
        agent = agent_token_for(here, bearer(parent), sessionId="p-7")
        assert reads(elsewhere, agent) == 200
        revoked = here.delete(f"/api/0/api-tokens/{token_id(db, parent)}/",
                              headers=bearer(parent))
        assert revoked.status_code == 204
        assert reads(here, agent) == 401  # the revoking process: at once
        apps[1].state.runtime.confirm_changes()
        assert reads(elsewhere, agent) == 401
