"""Agent tokens for resource servers in other processes, on SQLite and PostgreSQL: minting
for a registered audience (and nothing else), the ``org_slug`` claim, the grant's end
capping ``exp`` (what offline verification honours), scopegate's own API refusing a token
made for another audience, and the grant status endpoint an agent client polls."""

from __future__ import annotations

from datetime import datetime, timedelta

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from scopegate.core import agent_token
from scopegate.services import resource_servers
from scopegate.store.models import AuditEvent, WriteGrant
from scopegate.store.types import utcnow
from support.agent import approve_via_api, mint_agent
from support.http import bearer, login, parse_challenge
from support.settings import BASE_URL
from support.world import World, org_token, user_token

AUDIENCE = "https://issues.example.com/"
MEMBER = World.email("member")
MEMBER_SCOPES = {"org:read", "event:read", "event:write", "project:read"}
GRANT_PATH = "/api/0/organizations/{org}/agent/sessions/{session}/grant/"


@pytest.fixture
def registered(app: FastAPI, db: Session, world: World) -> str:
    resource_servers.register(db, app.state.runtime.settings, AUDIENCE, "Issues")
    db.commit()
    return AUDIENCE


def claims_of(client: TestClient, token: str, audience: str) -> dict:
    """The token's claims, verified offline against the JWKS as a resource server would."""
    jwks = client.get("/.well-known/jwks.json").json()
    kid = jwt.get_unverified_header(token[4:])["kid"]
    [jwk] = [key for key in jwks["keys"] if key["kid"] == kid]
    return jwt.decode(token[4:], jwt.PyJWK(jwk).key, algorithms=["EdDSA"],
                      audience=audience, issuer=BASE_URL)


def audit_count(db: Session) -> int:
    db.commit()
    return db.scalar(select(func.count()).select_from(AuditEvent)) or 0


# -- minting for an audience -------------------------------------------------------------------

def test_a_token_minted_for_a_registered_audience_carries_it_and_the_org_slug(
        client: TestClient, db: Session, registered: str) -> None:
    person = user_token(db, MEMBER, MEMBER_SCOPES)
    minted = mint_agent(client, bearer(person), sessionId="rs-1", audience=registered)
    assert minted.status_code == 201, minted.text
    claims = claims_of(client, minted.json()["token"], registered)
    assert claims["aud"] == registered
    assert claims["org_slug"] == "acme"
    assert claims["sid"] == "rs-1"


def test_the_default_audience_is_scopegate_s_api_and_carries_the_org_slug(
        client: TestClient, db: Session, registered: str) -> None:
    person = user_token(db, MEMBER, MEMBER_SCOPES)
    for body in ({}, {"audience": f"{BASE_URL}/api/0/"}):
        minted = mint_agent(client, bearer(person), **body)
        assert minted.status_code == 201, minted.text
        claims = claims_of(client, minted.json()["token"], f"{BASE_URL}/api/0/")
        assert claims["org_slug"] == "acme"


@pytest.mark.parametrize("audience", [
    "https://unknown.example.com/marker-7f3a",
    "https://issues.example.com",  # not exactly the registered one
    f"{BASE_URL}/mcp",
    "https://issues.example.com/" + "marker-7f3a" * 60,  # past 512 characters
    "",
], ids=["unregistered", "not-exact", "mcp", "too-long", "empty"])
def test_an_audience_that_is_neither_the_api_nor_registered_is_400_without_echo(
        client: TestClient, db: Session, registered: str, audience: str) -> None:
    person = user_token(db, MEMBER, MEMBER_SCOPES)
    refused = mint_agent(client, bearer(person), audience=audience)
    assert refused.status_code == 400, refused.text
    assert "marker-7f3a" not in refused.text
    assert audience not in refused.text or audience == ""


def test_scopegate_s_own_api_refuses_a_token_made_for_another_audience(
        client: TestClient, db: Session, registered: str) -> None:
    person = user_token(db, MEMBER, MEMBER_SCOPES)
    elsewhere = mint_agent(client, bearer(person), audience=registered).json()["token"]
    here = mint_agent(client, bearer(person)).json()["token"]
    issues = "/api/0/organizations/acme/issues/"
    assert client.get(issues, headers=bearer(here)).status_code == 200
    refused = client.get(issues, headers=bearer(elsewhere))
    assert refused.status_code == 401, refused.text
    assert parse_challenge(refused.headers["www-authenticate"])["error"] == "invalid_token"


def test_older_tokens_without_org_slug_still_parse(app: FastAPI, world: World) -> None:
    from support.agent import agent_claims

    claims = agent_claims(app, world.users["member"], world.orgs["acme"])
    assert "org_slug" not in claims
    assert agent_token.parse_claims(claims).org_slug is None
    assert agent_token.parse_claims({**claims, "org_slug": "acme"}).org_slug == "acme"
    for wrong in (7, "", "x" * 65, ["acme"]):
        with pytest.raises(agent_token.MalformedClaims):
            agent_token.parse_claims({**claims, "org_slug": wrong})


# -- the grant's end caps exp -------------------------------------------------------------------

def test_a_token_with_granted_writes_ends_when_its_grant_ends(
        client: TestClient, db: Session, world: World, registered: str) -> None:
    person = user_token(db, MEMBER, MEMBER_SCOPES)
    csrf = login(client, MEMBER)
    approved = approve_via_api(client, csrf, ["event:write"], session="s-cap")
    assert approved.status_code == 201, approved.text
    grant_end = int((utcnow() + timedelta(seconds=90)).timestamp())
    db.execute(update(WriteGrant).where(WriteGrant.session_id == "s-cap").values(
        expires_at=utcnow().replace(microsecond=0) + timedelta(seconds=90)))
    db.commit()
    client.cookies.clear()

    for audience in (registered, f"{BASE_URL}/api/0/"):
        writer = mint_agent(client, bearer(person), sessionId="s-cap", ttlSeconds=3600,
                            audience=audience)
        assert writer.status_code == 201, writer.text
        claims = claims_of(client, writer.json()["token"], audience)
        assert "event:write" in claims["scopes"]
        assert abs(claims["exp"] - grant_end) <= 1
        assert claims["exp"] < claims["iat"] + 3600

    reader = mint_agent(client, bearer(person), sessionId="s-cap", ttlSeconds=3600,
                        requestedScopes=["event:read"])
    claims = claims_of(client, reader.json()["token"], f"{BASE_URL}/api/0/")
    assert claims["exp"] == claims["iat"] + 3600  # no write scope: the grant's end is moot


# -- the grant status endpoint -----------------------------------------------------------------

def test_grant_status_is_404_until_approved_then_200_then_404_once_revoked(
        client: TestClient, db: Session, world: World) -> None:
    person = user_token(db, MEMBER, MEMBER_SCOPES)
    path = GRANT_PATH.format(org="acme", session="wait-1")
    missing = client.get(path, headers=bearer(person))
    assert missing.status_code == 404, missing.text

    csrf = login(client, MEMBER)
    assert approve_via_api(client, csrf, ["event:write"], session="wait-1").status_code == 201
    client.cookies.clear()
    audits = audit_count(db)
    found = client.get(path, headers=bearer(person))
    assert found.status_code == 200, found.text
    body = found.json()
    assert set(body) == {"sessionId", "scopes", "expiresAt"}
    assert body["sessionId"] == "wait-1" and body["scopes"] == ["event:write"]
    db.commit()
    grant = db.scalar(select(WriteGrant).where(WriteGrant.session_id == "wait-1"))
    assert grant is not None
    assert abs(_epoch(body["expiresAt"]) - grant.expires_at.timestamp()) < 1
    for _ in range(3):
        assert client.get(path, headers=bearer(person)).status_code == 200
    assert audit_count(db) == audits, "a poll writes no audit row"

    # Another session, another organization, another person: none.
    assert client.get(GRANT_PATH.format(org="acme", session="wait-2"),
                      headers=bearer(person)).status_code == 404
    assert client.get(GRANT_PATH.format(org="globex", session="wait-1"),
                      headers=bearer(person)).status_code == 404
    admin = user_token(db, World.email("admin"), {"org:read"})
    assert client.get(path, headers=bearer(admin)).status_code == 404

    revoked = client.delete("/api/0/organizations/acme/agent/sessions/wait-1/",
                            headers=bearer(person))
    assert revoked.status_code == 204
    assert client.get(path, headers=bearer(person)).status_code == 404


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_grant_status_refuses_kinds_that_cannot_mint(
        client: TestClient, db: Session, world: World) -> None:
    path = GRANT_PATH.format(org="acme", session="s1")
    assert client.get(path).status_code == 401
    assert client.get(path, headers=bearer(org_token(db, "acme"))).status_code == 403
    person = user_token(db, MEMBER, MEMBER_SCOPES)
    agent = mint_agent(client, bearer(person)).json()["token"]
    assert client.get(path, headers=bearer(agent)).status_code == 403
    assert client.get(path, headers=bearer("sgu_" + "x" * 40)).status_code == 401
    assert client.get(GRANT_PATH.format(org="acme", session="s" * 129),
                      headers=bearer(person)).status_code == 400


def test_grant_status_is_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    operation = paths["/api/0/organizations/{org}/agent/sessions/{session_id}/grant/"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"org", "session_id"}
    assert set(operation["responses"]) >= {"200", "404"}
