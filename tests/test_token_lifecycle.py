"""User and org tokens from creation to revocation: shown once, bounded, and then dead."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

import spec
from scopegate.core import org_token_format
from scopegate.core.changes import Change, Topic
from scopegate.core.token_kinds import TokenKind
from scopegate.services import credentials, directory
from scopegate.store.models import OrgToken, UserToken
from scopegate.store.outbox import record_change
from scopegate.web.api.tokens import ORG_TOKENS, USER_TOKENS
from support.agent import agent_token_for
from support.http import bearer, login, parse_challenge
from support.settings import BASE_URL
from support.world import org_token, user_token

ORGS = "/api/0/organizations/"
ACME = "/api/0/organizations/acme"


def assert_invalid_token(response) -> None:
    assert response.status_code == 401, response.text
    assert parse_challenge(response.headers.get("www-authenticate"))["error"] == "invalid_token"
    assert response.json()["error"] == "invalid_token"
    assert response.json()["detail"]


def _row(db, model, token):
    row = credentials.find_by_secret(db, model, token)
    assert row is not None
    return row


def test_a_revoked_user_token_is_refused(client, db, world):
    keeper = user_token(db, "owner@acme.test", {"org:read"})
    doomed = user_token(db, "owner@acme.test", {"org:read"})
    assert client.get(ORGS, headers=bearer(doomed)).status_code == 200
    doomed_id = _row(db, UserToken, doomed).id

    revoked = client.delete(f"/api/0/api-tokens/{doomed_id}/", headers=bearer(keeper))
    assert revoked.status_code == 204

    assert_invalid_token(client.get(ORGS, headers=bearer(doomed)))
    assert_invalid_token(client.get(f"{ACME}/", headers=bearer(doomed)))
    listed = client.get("/api/0/api-tokens/", headers=bearer(keeper)).json()
    assert str(doomed_id) not in [t["id"] for t in listed]
    assert client.get(ORGS, headers=bearer(keeper)).status_code == 200


def test_an_expired_user_token_is_refused(client, db, world):
    token = user_token(db, "owner@acme.test", {"org:read"},
                       expires_at=datetime.now(UTC) + timedelta(days=1))
    assert client.get(ORGS, headers=bearer(token)).status_code == 200
    # The service refuses a past expiry, so age the row directly (announcing the edit,
    # as every change to a cached row is announced).
    digest = credentials.token_hash(token)
    db.execute(
        update(UserToken)
        .where(UserToken.token_hash == digest)
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    record_change(db, Change(Topic.CREDENTIAL, digest))
    db.commit()
    response = client.get(ORGS, headers=bearer(token))
    assert_invalid_token(response)
    assert "expired" in response.json()["detail"]


def test_a_revoked_org_token_is_refused(client, db, world):
    token = org_token(db, "acme")
    assert client.get(f"{ACME}/releases/", headers=bearer(token)).status_code == 200
    manager = user_token(db, "manager@acme.test", {"org:write"})
    token_id = _row(db, OrgToken, token).id

    revoked = client.delete(f"{ACME}/org-auth-tokens/{token_id}/", headers=bearer(manager))
    assert revoked.status_code == 204

    assert_invalid_token(client.get(f"{ACME}/releases/", headers=bearer(token)))


@pytest.mark.parametrize(
    "token",
    [
        "sgu_" + "A" * 43,
        "sgu_",
        org_token_format.encode(
            org_token_format.OrgTokenPayload(org="acme", url=BASE_URL, iat=1), "ab" * 32
        ),
        "ghp_" + "a" * 36,
        "SGU_" + "A" * 43,
        "sgx_" + "A" * 43,
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
    ],
    ids=["unknown-user", "bare-prefix", "unknown-org", "github", "uppercase", "sgx", "jwt"],
)
def test_an_unknown_or_unrouted_token_is_refused(token, client):
    assert_invalid_token(client.get(ORGS, headers=bearer(token)))


def test_a_user_token_of_a_deactivated_person_is_refused(client, db, world):
    token = user_token(db, "member@acme.test", {"org:read"})
    assert client.get(ORGS, headers=bearer(token)).status_code == 200  # now cached
    directory.set_active(db, directory.get_user_by_email(db, "member@acme.test"), False)
    db.commit()
    assert_invalid_token(client.get(ORGS, headers=bearer(token)))


def test_a_created_user_token_is_shown_once_and_stored_as_a_hash(client, db, world):
    csrf = login(client, "member@acme.test")
    created = client.post(
        "/api/0/api-tokens/",
        json={"scopes": ["event:write", "org:read"], "name": "laptop"},
        headers={"X-CSRF-Token": csrf},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["token"]
    assert secret.startswith("sgu_") and len(secret) >= 4 + 43
    assert body["tokenLastCharacters"] == secret[-4:]
    assert body["scopes"] == ["org:read", "event:write"]
    assert body["name"] == "laptop"

    listing = client.get("/api/0/api-tokens/")
    assert listing.status_code == 200
    assert [t["id"] for t in listing.json()] == [body["id"]]
    assert "token" not in listing.json()[0]
    assert secret not in listing.text
    assert secret not in client.get("/account").text

    row = db.get(UserToken, int(body["id"]))
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = [str(getattr(row, column.key)) for column in UserToken.__table__.columns]
    assert not [value for value in stored if secret in value]

    works = client.get(f"{ACME}/issues/", headers=bearer(secret))
    assert works.status_code == 200


def test_two_created_tokens_have_different_secrets(client, db, world):
    headers = bearer(user_token(db, "member@acme.test", {"org:read"}))
    first = client.post("/api/0/api-tokens/", json={"scopes": ["org:read"]}, headers=headers)
    second = client.post("/api/0/api-tokens/", json={"scopes": ["org:read"]}, headers=headers)
    assert first.json()["token"] != second.json()["token"]


#: (scopes of the creating token, scopes requested, status)
WITHIN_OWN_SCOPES = [
    ({"event:read"}, ["event:write"], 403),
    ({"event:read"}, ["event:read", "org:read"], 403),
    ({"org:read"}, ["org:ci"], 403),
    ({"event:read"}, ["event:read"], 201),
    ({"event:admin"}, ["event:write", "event:read"], 201),
    ({"org:admin"}, ["org:integrations"], 201),
]


def test_a_user_token_creates_tokens_only_within_its_own_scopes(client, db, world):
    for held, requested, status in WITHIN_OWN_SCOPES:
        token = user_token(db, "owner@acme.test", held)
        response = client.post("/api/0/api-tokens/", json={"scopes": requested},
                               headers=bearer(token))
        assert response.status_code == status, (held, requested, response.text)
        if status == 403:
            assert "token" not in response.json()
    created = db.scalars(select(UserToken.scopes).where(UserToken.name == "")).all()
    refused = [set(r) for h, r, status in WITHIN_OWN_SCOPES if status == 403]
    assert not [scopes for scopes in created if scopes in refused]


def test_a_token_with_an_expiry_in_the_past_cannot_be_created(client, db, world):
    headers = bearer(user_token(db, "owner@acme.test", {"org:read"}))
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = client.post("/api/0/api-tokens/", json={"scopes": ["org:read"], "expiresAt": past},
                           headers=headers)
    assert response.status_code == 400
    assert "expiresAt" in response.json()["detail"]


def test_creating_an_org_token_needs_org_write(client, db, world):
    for role in ("member", "admin"):
        headers = bearer(user_token(db, f"{role}@acme.test", spec.ALL_SCOPES))
        response = client.post(f"{ACME}/org-auth-tokens/", json={"name": "x"}, headers=headers)
        assert response.status_code == 403, (role, response.text)
        challenge = parse_challenge(response.headers.get("www-authenticate"))
        assert set(challenge["scope"].split()) == {"org:write", "org:admin"}
    assert db.scalar(select(OrgToken.id)) is None

    created = []
    for role in ("manager", "owner"):
        headers = bearer(user_token(db, f"{role}@acme.test", spec.ALL_SCOPES))
        response = client.post(f"{ACME}/org-auth-tokens/", json={"name": role}, headers=headers)
        assert response.status_code == 201, (role, response.text)
        body = response.json()
        assert body["scopes"] == ["org:ci"]
        payload = org_token_format.decode(body["token"])
        assert payload is not None and payload.org == "acme" and payload.url == BASE_URL
        created.append(body)

    release = client.post(f"{ACME}/releases/", json={"version": "1.0", "projects": ["web"]},
                          headers=bearer(created[0]["token"]))
    assert release.status_code == 201
    listed = client.get(f"{ACME}/org-auth-tokens/", headers=headers)
    assert [t["id"] for t in listed.json()] == [t["id"] for t in created]
    assert not [t for t in created if t["token"] in listed.text]


def test_a_user_token_cannot_create_an_org_token_beyond_its_scopes(client, db, world):
    headers = bearer(user_token(db, "owner@acme.test", {"org:read", "project:admin"}))
    response = client.post(f"{ACME}/org-auth-tokens/", json={}, headers=headers)
    assert response.status_code == 403


def test_you_can_revoke_only_your_own_user_tokens(client, db, world):
    mine = user_token(db, "owner@acme.test", {"org:read"})
    theirs = user_token(db, "member@acme.test", {"org:read"})
    theirs_id = _row(db, UserToken, theirs).id
    response = client.delete(f"/api/0/api-tokens/{theirs_id}/", headers=bearer(mine))
    assert response.status_code == 404
    assert client.get(ORGS, headers=bearer(theirs)).status_code == 200


def test_an_org_token_can_be_revoked_only_through_its_own_org(client, db, world):
    globex_token = org_token(db, "globex")
    globex_id = _row(db, OrgToken, globex_token).id
    manager = bearer(user_token(db, "owner@acme.test", {"org:admin"}))
    response = client.delete(f"{ACME}/org-auth-tokens/{globex_id}/", headers=manager)
    assert response.status_code == 404
    still = client.get("/api/0/organizations/globex/releases/", headers=bearer(globex_token))
    assert still.status_code == 200


def test_an_org_token_cannot_manage_credentials(client, db, world):
    headers = bearer(org_token(db, "acme"))
    for method, path, body in [
        ("GET", "/api/0/api-tokens/", None),
        ("POST", "/api/0/api-tokens/", {"scopes": ["org:ci"]}),
        ("DELETE", "/api/0/api-tokens/1/", None),
        ("GET", f"{ACME}/org-auth-tokens/", None),
        ("POST", f"{ACME}/org-auth-tokens/", {}),
        ("DELETE", f"{ACME}/org-auth-tokens/1/", None),
    ]:
        response = client.request(method, path, headers=headers, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "scope" not in response.json()
    assert db.scalar(select(UserToken.id)) is None
    assert len(db.scalars(select(OrgToken.id)).all()) == 1


def test_an_agent_token_cannot_manage_credentials(client, db, world):
    person = user_token(db, "owner@acme.test", spec.ALL_SCOPES)
    agent = bearer(agent_token_for(client, bearer(person), sessionId="lifecycle-1"))
    assert client.get(f"{ACME}/", headers=agent).status_code == 200  # the token works
    person_id = _row(db, UserToken, person).id
    attempts = [
        client.get("/api/0/api-tokens/", headers=agent),
        client.post("/api/0/api-tokens/", json={"scopes": ["org:read"]}, headers=agent),
        client.delete(f"/api/0/api-tokens/{person_id}/", headers=agent),
        client.post(f"{ACME}/org-auth-tokens/", json={}, headers=agent),
    ]
    assert [r.status_code for r in attempts] == [403, 403, 403, 403]
    assert client.get(ORGS, headers=bearer(person)).status_code == 200
    assert db.scalar(select(OrgToken.id)) is None


@pytest.mark.parametrize("kind", [TokenKind.AGENT, TokenKind.ORG, TokenKind.INTEGRATION])
def test_credential_endpoints_do_not_admit_tokens_without_a_durable_person(kind):
    assert not USER_TOKENS.admits_kind(kind)
    assert not ORG_TOKENS.admits_kind(kind)
