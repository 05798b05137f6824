"""The guard deciding in-process (``Guard.local``), in front of apps that are not
scopegate's: a fresh FastAPI app and a fresh Starlette app on scopegate's database.

Tokens come from scopegate itself (its services, its API, its signing key); the guarded
apps build their own runtime on the same database, as another service would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.testclient import TestClient

from scopegate.core.roles import Role
from scopegate.guard import Guard
from scopegate.guard.local import request_info
from scopegate.services import credentials, directory
from scopegate.settings import Settings
from scopegate.store.models import UserToken
from support.agent import agent_claims, agent_token_for, sign_agent_token
from support.guarded_apps import APPS
from support.http import bearer, parse_challenge
from support.settings import BASE_URL
from support.world import World, user_token

MEMBER = World.email(Role.MEMBER)
THINGS = "/organizations/{org}/things/"


@pytest.fixture(params=sorted(APPS))
def guarded(request: pytest.FixtureRequest, settings: Settings,
            client: TestClient) -> Iterator[TestClient]:
    """A fresh app of each kind behind ``Guard.local`` on the test database (its own
    runtime, started and stopped by the app's lifespan)."""
    app = APPS[request.param](Guard.local(settings))
    with TestClient(app, base_url="http://guarded.test") as test_client:
        yield test_client


def _things(guarded: TestClient, token: str, org: str = "acme", method: str = "GET"):
    return guarded.request(method, THINGS.format(org=org), headers=bearer(token))


def test_a_token_holding_a_sufficient_scope_is_allowed(guarded, db: Session, world: World):
    token = user_token(db, MEMBER, {"event:read", "org:read"})
    response = _things(guarded, token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["org"] == "acme" and body["org_id"] == world.orgs["acme"]
    assert body["kind"] == "user" and body["user"] == world.users["member"]
    assert "event:read" in body["scopes"]


def test_insufficient_scope_names_what_would_suffice(guarded, db: Session, world: World):
    token = user_token(db, MEMBER, {"event:read"})
    response = _things(guarded, token, method="PUT")
    assert response.status_code == 403
    challenge = parse_challenge(response.headers["www-authenticate"])
    assert challenge["error"] == "insufficient_scope"
    assert challenge["scope"] == "event:write event:admin"
    assert response.json()["scope"] == "event:write event:admin"


def test_an_agent_token_lacking_a_write_scope_gets_the_approval_hint(
        guarded, client: TestClient, db: Session, world: World):
    person = user_token(db, MEMBER, {"event:read", "event:write", "org:read"})
    agent = agent_token_for(client, bearer(person), sessionId="guard-1", agent="bot")
    response = _things(guarded, agent, method="PUT")
    assert response.status_code == 403
    approval = response.json()["approval"]
    assert approval["scopes"] == ["event:write"] and approval["sessionId"] == "guard-1"
    assert approval["url"].startswith(f"{BASE_URL}/organizations/acme/agent/approve?")
    assert _things(guarded, agent).status_code == 200  # reads need no approval


def test_a_token_of_another_organization_is_not_found(guarded, db: Session, world: World):
    token = user_token(db, MEMBER, {"event:read"})
    assert _things(guarded, token, org="globex").status_code == 404
    org_token = credentials.create_org_token(db, directory.get_org(db, "acme"), None,
                                             BASE_URL).token
    db.commit()
    assert _things(guarded, org_token, org="globex").status_code == 404


def test_a_revoked_token_is_refused(guarded, app: FastAPI, db: Session, world: World):
    minted = credentials.create_user_token(
        db, directory.get_user(db, world.users["member"]), frozenset({"event:read"}))
    db.commit()
    credentials.revoke_user_token(db, app.state.runtime.deny_list, world.users["member"],
                                  minted.row.id)
    db.commit()
    response = _things(guarded, minted.token)
    assert response.status_code == 401
    assert parse_challenge(response.headers["www-authenticate"])["error"] == "invalid_token"


def test_an_expired_token_is_refused(guarded, app: FastAPI, db: Session, world: World):
    minted = credentials.create_user_token(
        db, directory.get_user(db, world.users["member"]), frozenset({"event:read"}),
        expires_at=datetime.now(UTC) + timedelta(days=1))
    db.execute(update(UserToken).where(UserToken.id == minted.row.id)
               .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    db.commit()
    assert _things(guarded, minted.token).status_code == 401
    past = int(time.time()) - 600
    expired_agent = sign_agent_token(app, agent_claims(
        app, world.users["member"], world.orgs["acme"], iat=past, exp=past + 300))
    response = _things(guarded, expired_agent)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_a_token_for_another_audience_is_refused(guarded, app: FastAPI, world: World):
    other = sign_agent_token(app, agent_claims(
        app, world.users["member"], world.orgs["acme"], aud="https://other.example/api/"))
    response = _things(guarded, other)
    assert response.status_code == 401
    assert parse_challenge(response.headers["www-authenticate"])["error"] == "invalid_token"
    good = sign_agent_token(app, agent_claims(app, world.users["member"], world.orgs["acme"]))
    assert _things(guarded, good).status_code == 200


def test_no_credential_is_a_bare_challenge(guarded):
    response = guarded.get(THINGS.format(org="acme"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="scopegate"')
    assert "error=" not in response.headers["www-authenticate"]


def test_an_endpoint_outside_organizations_checks_the_kind(guarded, db: Session,
                                                           world: World):
    token = user_token(db, MEMBER, {"org:read"})
    assert guarded.get("/me/", headers=bearer(token)).json() == {
        "kind": "user", "user": world.users["member"]}
    org_token = credentials.create_org_token(db, directory.get_org(db, "acme"), None,
                                             BASE_URL).token
    db.commit()
    assert guarded.get("/me/", headers=bearer(org_token)).status_code == 403


@pytest.mark.parametrize("raw_path", [
    b"/api/0/organizations/acme/issues/", b"/a%3Fb/%23c/", b"/caf%C3%A9/x%5Cy", b"/a b/",
])
@pytest.mark.parametrize("agents", [[], [b"curl/8"], [b"first", b"second"]])
def test_request_info_reads_what_starlette_reads(raw_path: bytes, agents: list[bytes]):
    """``request_info`` reads the ASGI scope itself (``request.url`` costs a quarter of a
    warm guard call); it must say what Starlette's request says."""
    headers = [(b"host", b"api.example"), *((b"user-agent", a) for a in agents)]
    for client in (("203.0.113.9", 4242), None):
        request = Request({"type": "http", "method": "GET", "scheme": "https",
                           "path": unquote(raw_path.decode()), "raw_path": raw_path,
                           "query_string": b"page=2", "headers": headers, "client": client,
                           "server": ("api.example", 443), "root_path": ""})
        info = request_info(request)
        assert info.ip == (request.client.host if request.client else None)
        assert info.user_agent == request.headers.get("user-agent")
        assert info.action == f"GET {request.url.path}"
