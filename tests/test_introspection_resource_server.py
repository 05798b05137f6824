"""Introspection (RFC 7662) as a resource server in another process asks it, in process, on
SQLite and PostgreSQL: each opaque kind is active with the organizations it may act in and
its effective scopes there (credential scopes ∩ role, hierarchy expanded, by the hand-written
tables in ``spec``); revoked, refresh, agent and other audiences' tokens are inactive; an
OAuth client's introspection of its own tokens is unchanged; a wrong secret is 401."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import spec
from scopegate.core.roles import Role
from scopegate.services import credentials, directory, integrations, resource_servers
from scopegate.services.oauth.clients import NewClient
from scopegate.services.resource_servers import NewResourceServer
from support.http import bearer, login
from support.oauth import REDIRECT_URI, authorize_params, decide, pkce, query_of, register
from support.settings import OAUTH_BASE_URL
from support.world import World, org_token

AUDIENCE = "https://issues.example.com/"
OTHER_AUDIENCE = "https://billing.example.com/"
MEMBER = World.email("member")


def closure(scopes: set[str]) -> frozenset[str]:
    return frozenset().union(*(spec.CLOSURE[s] for s in scopes))


def add_resource_server(session: Session, app: FastAPI,
                        audience: str = AUDIENCE) -> NewResourceServer:
    new = resource_servers.register(session, app.state.runtime.settings, audience, "Issues")
    session.commit()
    return new


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def introspect(web: TestClient, rs: NewResourceServer, token: str, **extra: str):
    return web.post("/oauth/introspect", data={"token": token, **extra},
                    headers=basic(rs.client_id, rs.client_secret))


def oauth_tokens(web: TestClient, app: NewClient, orgs: tuple[str, ...] = ("acme",),
                 **extra: str) -> dict:
    """The signed-in person approves ``app``; the whole token response of the exchange."""
    verifier, challenge = pkce()
    page = web.get("/oauth/authorize?" + urlencode(authorize_params(
        app.client.client_id, challenge, **extra)), follow_redirects=False)
    location = decide(web, page, "approve", orgs).headers["location"]
    code = query_of(location)["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier}
    answer = web.post("/oauth/token", data=data, headers=basic(
        app.client.client_id, app.client_secret or ""))
    assert answer.status_code == 200, answer.text
    return answer.json()


def join_globex(session: Session, email: str, role: Role) -> None:
    directory.add_member(session, directory.get_org(session, "globex"),
                         directory.get_user_by_email(session, email), role)
    session.commit()


def by_slug(answer: dict) -> dict[str, frozenset[str]]:
    return {org["slug"]: frozenset(org["scopes"]) for org in answer["orgs"]}


# -- each kind: active, with the right organizations and effective scopes ------------------

def test_a_user_token_lists_each_membership_with_its_effective_scopes(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World) -> None:
    rs = add_resource_server(session, oauth_app)
    join_globex(session, World.email("admin"), Role.MEMBER)
    scopes = {"project:admin", "event:read", "org:read"}
    minted = credentials.create_user_token(
        session, directory.get_user_by_email(session, World.email("admin")),
        frozenset(scopes))
    session.commit()

    answer = introspect(web, rs, minted.token)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["active"] is True
    assert body["token_type"] == "Bearer"
    assert set(body["scope"].split()) == scopes
    assert body["sub"] == str(people.users["admin"])
    assert body["iss"] == OAUTH_BASE_URL
    assert body["credential_kind"] == "user"
    assert body["credential_ref"].startswith(f"user_token:{minted.row.id}:")
    assert "aud" not in body and "client_id" not in body
    # acme as admin, globex as member: the token's scopes (closed) ∩ each role.
    assert by_slug(body) == {
        "acme": closure(scopes) & spec.ROLE_SCOPES["admin"],
        "globex": closure(scopes) & spec.ROLE_SCOPES["member"],
    }
    assert "project:admin" in by_slug(body)["acme"]
    assert "project:write" not in by_slug(body)["globex"]
    assert {org["id"] for org in body["orgs"]} == set(people.orgs.values())
    assert minted.token not in answer.text


def test_an_org_token_acts_in_its_own_organization_only(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World) -> None:
    rs = add_resource_server(session, oauth_app)
    token = org_token(session, "acme")
    body = introspect(web, rs, token).json()
    assert body["active"] is True
    assert body["credential_kind"] == "org"
    assert body["orgs"] == [{"id": people.orgs["acme"], "slug": "acme",
                             "scopes": sorted(spec.ORG_TOKEN_SCOPES)}]
    assert "sub" not in body


def test_an_integration_token_acts_in_its_own_organization_with_its_scopes_expanded(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World) -> None:
    rs = add_resource_server(session, oauth_app)
    integration = integrations.create_integration(session, people.orgs["globex"], "Sync",
                                                  {"project:write", "org:ci"})
    token = integrations.create_token(session, integration).token
    session.commit()
    body = introspect(web, rs, token).json()
    assert body["active"] is True
    assert body["credential_kind"] == "integration"
    assert by_slug(body) == {"globex": closure({"project:write", "org:ci"})}


def test_an_oauth_token_for_this_audience_is_active_in_the_consented_organizations(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World) -> None:
    rs = add_resource_server(session, oauth_app)
    join_globex(session, MEMBER, Role.OWNER)
    app = register(session, people.users["owner"])
    login(web, MEMBER)
    issued = oauth_tokens(web, app, orgs=("acme",), resource=AUDIENCE)
    access = issued["access_token"]

    body = introspect(web, rs, access).json()
    assert body["active"] is True
    assert body["credential_kind"] == "oauth_access"
    assert body["aud"] == AUDIENCE
    assert body["client_id"] == app.client.client_id
    assert body["sub"] == str(people.users["member"])
    assert body["exp"] > body["iat"] > 0
    # Consented to acme only, though the person owns globex too.
    assert by_slug(body) == {"acme": frozenset({"event:read", "project:read"})}
    # Made for the resource server, so scopegate's own API refuses it.
    refused = web.get("/api/0/organizations/acme/issues/", headers=bearer(access))
    assert refused.status_code == 401


# -- inactive -----------------------------------------------------------------------------

def test_a_revoked_user_token_is_inactive(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World) -> None:
    rs = add_resource_server(session, oauth_app)
    minted = credentials.create_user_token(
        session, directory.get_user_by_email(session, MEMBER), frozenset({"event:read"}))
    session.commit()
    assert introspect(web, rs, minted.token).json()["active"] is True
    credentials.revoke_user_token(session, oauth_app.state.runtime.deny_list,
                                  people.users["member"], minted.row.id)
    session.commit()
    assert introspect(web, rs, minted.token).json() == {"active": False}


def test_a_deactivated_person_s_token_is_inactive(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World) -> None:
    rs = add_resource_server(session, oauth_app)
    minted = credentials.create_user_token(
        session, directory.get_user_by_email(session, MEMBER), frozenset({"event:read"}))
    session.commit()
    directory.set_active(session, directory.get_user_by_email(session, MEMBER), False)
    session.commit()
    assert introspect(web, rs, minted.token).json() == {"active": False}


def test_oauth_tokens_of_another_audience_are_inactive(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World) -> None:
    rs = add_resource_server(session, oauth_app)
    other = add_resource_server(session, oauth_app, OTHER_AUDIENCE)
    app = register(session, people.users["owner"])
    login(web, MEMBER)
    for_api = oauth_tokens(web, app)["access_token"]  # no resource: scopegate's API
    for_other = oauth_tokens(web, app, resource=OTHER_AUDIENCE)["access_token"]
    assert introspect(web, rs, for_api).json() == {"active": False}
    assert introspect(web, rs, for_other).json() == {"active": False}
    assert introspect(web, other, for_other).json()["aud"] == OTHER_AUDIENCE


def test_refresh_agent_and_unknown_tokens_are_inactive(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World) -> None:
    rs = add_resource_server(session, oauth_app)
    app = register(session, people.users["owner"])
    login(web, MEMBER)
    refresh = oauth_tokens(web, app, resource=AUDIENCE)["refresh_token"]
    person = credentials.create_user_token(
        session, directory.get_user_by_email(session, MEMBER), frozenset({"event:read"}))
    session.commit()
    minted = web.post("/api/0/organizations/acme/agent/token/", json={"sessionId": "s1"},
                      headers=bearer(person.token))
    assert minted.status_code == 201, minted.text
    agent = minted.json()["token"]
    for token in (refresh, agent, "sgu_unknown", "not-a-token"):
        assert introspect(web, rs, token).json() == {"active": False}, token[:4]
    assert introspect(web, rs, refresh, token_type_hint="refresh_token").json() == {
        "active": False}


# -- other clients, and authentication -------------------------------------------------------

def test_an_oauth_client_still_learns_about_its_own_tokens_only(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World,
        confidential: NewClient) -> None:
    add_resource_server(session, oauth_app)
    login(web, MEMBER)
    mine = oauth_tokens(web, confidential)["access_token"]
    person = credentials.create_user_token(
        session, directory.get_user_by_email(session, MEMBER), frozenset({"event:read"}))
    session.commit()
    own = basic(confidential.client.client_id, confidential.client_secret or "")
    body = web.post("/oauth/introspect", data={"token": mine}, headers=own).json()
    assert body["active"] is True and body["client_id"] == confidential.client.client_id
    assert "credential_kind" not in body and "orgs" not in body
    assert web.post("/oauth/introspect", data={"token": person.token},
                    headers=own).json() == {"active": False}


@pytest.mark.parametrize("credential", ["wrong-secret", "unknown-client", "no-auth"])
def test_a_resource_server_with_a_wrong_credential_gets_401(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World,
        credential: str) -> None:
    rs = add_resource_server(session, oauth_app)
    token = org_token(session, "acme")
    headers = {"wrong-secret": basic(rs.client_id, rs.client_secret + "x"),
               "unknown-client": basic("nobody", rs.client_secret),
               "no-auth": {}}[credential]
    answer = web.post("/oauth/introspect", data={"token": token}, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client"
    assert token not in answer.text and rs.client_secret not in answer.text


def test_a_resource_server_credential_runs_no_grant(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World) -> None:
    rs = add_resource_server(session, oauth_app)
    for data in ({"grant_type": "refresh_token", "refresh_token": "sgr_x"},
                 {"grant_type": "authorization_code", "code": "x",
                  "redirect_uri": REDIRECT_URI, "code_verifier": "x" * 43}):
        answer = web.post("/oauth/token", data=data,
                          headers=basic(rs.client_id, rs.client_secret))
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "invalid_client"
    device = web.post("/oauth/device/code", data={"scope": "event:read"},
                      headers=basic(rs.client_id, rs.client_secret))
    assert device.status_code == 401, device.text


def test_malformed_basic_credentials_are_400_never_500(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World) -> None:
    add_resource_server(session, oauth_app)
    not_utf8 = base64.b64encode(b"\xff\xfe:secret").decode()
    for path, data in (("/oauth/introspect", {"token": "sgu_x"}),
                       ("/oauth/token", {"grant_type": "refresh_token", "refresh_token": "x"}),
                       ("/oauth/revoke", {"token": "sgr_x"})):
        answer = web.post(path, data=data, headers={"Authorization": f"Basic {not_utf8}"})
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"] == "invalid_request"
