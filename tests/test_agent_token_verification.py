"""Verifying agent tokens: forged, expired, confused and revoked tokens are refused with 401
(never a 500); a token is bound to its organization and to its person's current role;
JWKS verifies offline; keys rotate without breaking live tokens and are stored encrypted.

Tokens with hostile contents are signed here with the app's real key ring (or, for the
algorithm-confusion cases, with its public key material), never by patching the verifier.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

import spec
from scopegate.core.roles import Role
from scopegate.services import directory
from scopegate.services.keys import KeyEncryption, KeyRing, SecretMismatch
from scopegate.store.models import SigningKey, WriteGrant
from scopegate.store.types import utcnow
from scopegate.web.app import create_app
from support.agent import (
    agent_claims,
    agent_token_for,
    approve_via_api,
    mint_agent,
    sign_agent_token,
)
from support.hops import thread_hops
from support.http import bearer, login, parse_challenge
from support.settings import BASE_URL, SECRET, make_settings
from support.world import World, build_world_quick, user_token

MEMBER = World.email("member")
ADMIN = World.email("admin")
ISSUES = "/api/0/organizations/acme/issues/"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def world(db: Session) -> World:
    return build_world_quick(db)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def assert_invalid_token(response, reason: str = "") -> None:
    assert response.status_code == 401, (reason, response.status_code, response.text)
    challenge = parse_challenge(response.headers.get("www-authenticate"))
    assert challenge["error"] == "invalid_token", reason


def read_issues(client: TestClient, token: str):
    return client.get(ISSUES, headers=bearer(token))


def member_agent_token(client: TestClient, db: Session, **body: object) -> str:
    person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    return agent_token_for(client, bearer(person), **body)


def valid(app: FastAPI, world: World, **overrides: object) -> dict:
    return agent_claims(app, world.users["member"], world.orgs["acme"], **overrides)


# --- organization binding -----------------------------------------------------------------


def test_an_agent_token_is_refused_in_another_org_and_logged(
    client: TestClient, db: Session, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The person is a member of globex too: only the token's binding refuses it."""
    directory.add_member(db, directory.get_org(db, "globex"),
                         directory.get_user(db, world.users["member"]), Role.MEMBER)
    db.commit()
    person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    assert client.get("/api/0/organizations/globex/issues/", headers=bearer(person)
                      ).status_code == 200
    agent = agent_token_for(client, bearer(person))
    assert read_issues(client, agent).status_code == 200

    with caplog.at_level(logging.WARNING, logger="scopegate.security"):
        for path in ("/api/0/organizations/globex/issues/",
                     f"/api/0/organizations/globex/issues/{world.globex_issue_id}/",
                     "/api/0/organizations/globex/"):
            refused = client.get(path, headers=bearer(agent))
            assert refused.status_code == 404, (path, refused.text)
            assert refused.json() == {"detail": "organization not found"}
    lines = [r for r in caplog.records if r.name == "scopegate.security"]
    assert len(lines) == 3
    message = lines[0].getMessage()
    assert "cross-organization" in message
    assert f"bound_org={world.orgs['acme']}" in message
    assert f"target_org={world.orgs['globex']}" in message
    assert agent not in message and agent[4:] not in message


# --- forged and broken tokens (DB-independent: SQLite only) -------------------------------


@SQLITE_ONLY
def test_expired_token_is_refused(client: TestClient, app: FastAPI, world: World) -> None:
    now = int(time.time())
    expired = sign_agent_token(app, valid(app, world, iat=now - 400, exp=now - 100))
    response = read_issues(client, expired)
    assert_invalid_token(response, "expired")
    assert "expired" in response.json()["detail"]
    # The same claims with a live exp pass: the signing here is sound.
    assert read_issues(client, sign_agent_token(app, valid(app, world))).status_code == 200


@SQLITE_ONLY
def test_tampered_payload_is_refused(client: TestClient, db: Session, world: World) -> None:
    token = member_agent_token(client, db)
    assert read_issues(client, token).status_code == 200
    header, payload, signature = token[4:].split(".")
    claims = json.loads(unb64(payload))
    for name, value in [("scopes", [*claims["scopes"], "event:admin"]),
                        ("sub", str(world.users["owner"])),
                        ("exp", claims["exp"] + 60),
                        ("sid", "another-session")]:
        forged = b64(json.dumps({**claims, name: value}).encode())
        assert_invalid_token(read_issues(client, f"sga_{header}.{forged}.{signature}"), name)
    # A flipped signature bit, too.
    raw = bytearray(unb64(signature))
    raw[0] ^= 1
    assert_invalid_token(read_issues(client, f"sga_{header}.{payload}.{b64(bytes(raw))}"))


@SQLITE_ONLY
def test_alg_none_is_refused(client: TestClient, app: FastAPI, world: World) -> None:
    kid = app.state.runtime.keys.active().kid
    payload = b64(json.dumps(valid(app, world)).encode())
    for alg in ("none", "None", "NONE"):
        header = b64(json.dumps({"alg": alg, "kid": kid, "typ": "sg-agent+jwt"}).encode())
        for signature in ("", "AAAA"):
            assert_invalid_token(read_issues(client, f"sga_{header}.{payload}.{signature}"), alg)


@SQLITE_ONLY
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_hs256_signed_with_the_public_key_is_refused(
    client: TestClient, app: FastAPI, world: World
) -> None:
    """Algorithm confusion: HMAC keyed with public material anyone can read."""
    public = app.state.runtime.keys.active().key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = client.get("/.well-known/jwks.json").json()["keys"][0]
    claims = valid(app, world)
    for key in (raw, jwk["x"], jwk["x"].encode()):
        for alg in ("HS256", "HS512"):
            token = sign_agent_token(app, claims, key=key, algorithm=alg)
            assert_invalid_token(read_issues(client, token), f"{alg} {key!r}")
    # ... and with the header still claiming EdDSA over an HMAC signature.
    hs = jwt.encode(claims, raw, algorithm="HS256").split(".")
    header = b64(json.dumps({"alg": "EdDSA", "kid": jwk["kid"], "typ": "sg-agent+jwt"}).encode())
    assert_invalid_token(read_issues(client, f"sga_{header}.{hs[1]}.{hs[2]}"))


@SQLITE_ONLY
def test_wrong_audience_issuer_kid_or_typ_is_refused(
    client: TestClient, app: FastAPI, world: World
) -> None:
    cases = {
        "audience": (valid(app, world, aud="https://elsewhere.example/api/0/"), {}),
        "audience list": (valid(app, world, aud=["https://elsewhere.example/api/0/"]), {}),
        "issuer": (valid(app, world, iss="https://evil.example"), {}),
        "issuer trailing slash": (valid(app, world, iss=BASE_URL + "/"), {}),
        "unknown kid": (valid(app, world), {"kid": "no-such-key"}),
        "no kid": (valid(app, world), {"kid": None}),
        "long kid": (valid(app, world), {"kid": "k" * 5000}),
        "kid not a string": (valid(app, world), {"kid": 7}),
        "typ missing": (valid(app, world), {"typ": None}),
        "typ JWT": (valid(app, world), {"typ": "JWT"}),
    }
    for reason, (claims, header) in cases.items():
        assert_invalid_token(read_issues(client, sign_agent_token(app, claims, headers=header)),
                             reason)
    # A single-element audience list naming us is fine (RFC 7519 allows either form).
    ours = sign_agent_token(app, valid(app, world, aud=[f"{BASE_URL}/api/0/"]))
    assert read_issues(client, ours).status_code == 200


def test_malformed_claims_are_401_never_500(
    client: TestClient, app: FastAPI, world: World
) -> None:
    now = int(time.time())
    cases = {
        "sub not digits": {"sub": "alice"},
        "sub a number": {"sub": world.users["member"]},
        "sub negative": {"sub": "-1"},
        "sub huge": {"sub": "9" * 20},
        "sub beyond 2**53": {"sub": str(2**53)},
        "sub superscript digit": {"sub": "\u00b2"},
        "sub arabic-indic digits": {"sub": "\u0663"},
        "sub with a newline": {"sub": "1\n"},
        "scopes a string": {"scopes": "event:read"},
        "scopes an object": {"scopes": {"event:read": True}},
        "scopes holds a number": {"scopes": ["event:read", 3]},
        "scopes holds a list": {"scopes": [["event:read"]]},
        "unknown scope": {"scopes": ["event:read", "event:destroy"]},
        "too many scopes": {"scopes": ["event:read"] * 100},
        "sid missing": {"sid": None},
        "sid empty": {"sid": ""},
        "sid with space": {"sid": "a b"},
        "sid with a trailing newline": {"sid": "s1\n"},
        "sid a number": {"sid": 5},
        "org a string": {"org": str(world.orgs["acme"])},
        "org a float": {"org": float(world.orgs["acme"])},
        "org a bool": {"org": True},
        "org negative": {"org": -1},
        "org huge": {"org": 2**64},
        "org missing": {"org": None},
        "act missing": {"act": None},
        "act a string": {"act": "agent"},
        "act without sub": {"act": {}},
        "jti missing": {"jti": None},
        "jti a number": {"jti": 12},
        "iat missing": {"iat": None},
        "iat a string": {"iat": str(now)},
        "exp a string": {"exp": str(now + 300)},
        "exp a float": {"exp": now + 300.5},
        "lifetime beyond the maximum": {"exp": now + 7200},
        "issued in the future": {"iat": now + 600, "exp": now + 900},
    }
    wrong = {}
    for reason, overrides in cases.items():
        response = read_issues(client, sign_agent_token(app, valid(app, world, **overrides)))
        if response.status_code != 401:
            wrong[reason] = response.status_code
        else:
            assert_invalid_token(response, reason)
    assert not wrong, f"not refused with 401: {wrong}"
    # Well-formed, but naming nobody in acme: refused like any non-member, not a crash.
    nobody = read_issues(client, sign_agent_token(app, valid(app, world, sub="999999")))
    assert nobody.status_code in (401, 404), nobody.text
    for garbage in ("sga_", "sga_.", "sga_a.b.c", "sga_" + "A" * 4000, "sga_ey.ey.ey",
                    "sga_" + b64(b"{}") + "." + b64(b"[]") + "."):
        response = read_issues(client, garbage)
        assert response.status_code == 401, (garbage[:20], response.text)


# --- revocation ---------------------------------------------------------------------------


def test_revoking_a_session_stops_its_live_tokens_at_once(
    database_url: str, request: pytest.FixtureRequest
) -> None:
    """The revoking process refuses the session's tokens as soon as the revocation has
    returned. A second app on the same database plays another server process: it had
    the token cached as good, and refuses it once it has confirmed the changes (its
    upkeep does so twice per ``SCOPEGATE_CACHE_SECONDS``; here the test asks at once),
    which proves the entry is shared, not only cached in the revoker. Real processes
    and the Redis bus: ``tests/test_propagation.py``.
    """
    app = create_app(make_settings(database_url))
    request.addfinalizer(app.state.runtime.engine.dispose)
    other_process = create_app(make_settings(database_url))
    request.addfinalizer(other_process.state.runtime.engine.dispose)
    # Session ids unique per run: Redis outlives the database and ids repeat after TRUNCATE.
    sid = f"rev-{time.time_ns()}"
    other = f"{sid}-b"
    with TestClient(app, base_url=BASE_URL) as client, \
            TestClient(other_process, base_url=BASE_URL) as elsewhere, \
            app.state.runtime.factory() as db:
        world = build_world_quick(db)
        person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
        csrf = login(client, MEMBER)
        assert approve_via_api(client, csrf, ["event:write"], session=sid).status_code == 201
        live = agent_token_for(client, bearer(person), sessionId=sid)
        sibling = agent_token_for(client, bearer(person), sessionId=other)
        assert read_issues(client, live).status_code == 200
        assert read_issues(elsewhere, live).status_code == 200

        revoked = client.delete(f"/api/0/organizations/acme/agent/sessions/{sid}/",
                                headers=bearer(person))
        assert revoked.status_code == 204, revoked.text
        response = read_issues(client, live)
        assert_invalid_token(response, "revoked")
        assert "revoked" in response.json()["detail"]
        other_process.state.runtime.confirm_changes()
        assert_invalid_token(read_issues(elsewhere, live), "revoked, seen by another process")
        # Only that session: its sibling still works.
        assert read_issues(client, sibling).status_code == 200
        assert read_issues(elsewhere, sibling).status_code == 200
        db.commit()
        assert db.scalar(select(WriteGrant.id).where(WriteGrant.session_id == sid)) is None

        deny_list = app.state.runtime.deny_list
        # Read as the request path does: from memory, or (caches not confirmed within the
        # staleness bound on a loaded machine) with a connection.
        revoked_at = app.state.runtime.gate.run_with_connection(
            lambda conn: deny_list.revoked_at(world.orgs["acme"], world.users["member"], sid,
                                              conn))
        assert revoked_at is not None
        # Refused: a token of the session issued at the revocation second (by design).
        at = sign_agent_token(app, valid(app, world, sid=sid, iat=revoked_at,
                                         exp=revoked_at + 300))
        assert_invalid_token(read_issues(client, at), "issued at revocation")
        # A token issued after the revocation works again (read-only: the grant is gone).
        after = sign_agent_token(app, valid(app, world, sid=sid, iat=revoked_at + 1,
                                            exp=revoked_at + 301))
        assert read_issues(client, after).status_code == 200
        assert read_issues(elsewhere, after).status_code == 200
        # And a freshly minted token for a new session carries no trace of the old grant.
        fresh = mint_agent(client, bearer(person), sessionId=f"{sid}-c")
        assert fresh.status_code == 201
        assert "event:write" not in fresh.json()["scopes"]


def test_grants_are_listed_and_revoking_one_stops_its_tokens(
    client: TestClient, db: Session, world: World
) -> None:
    person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    with TestClient(client.app, base_url=BASE_URL) as admin_client:
        admin_csrf = login(admin_client, ADMIN)
        assert approve_via_api(admin_client, admin_csrf, ["event:write"],
                               session="admins").status_code == 201
    csrf = login(client, MEMBER)
    assert approve_via_api(client, csrf, ["event:write"], session="g-1",
                           agent="claude").status_code == 201
    writer = agent_token_for(client, bearer(person), sessionId="g-1")

    listed = client.get("/api/0/agent/grants/", headers=bearer(person))
    assert listed.status_code == 200, listed.text
    [grant] = listed.json()
    assert grant["sessionId"] == "g-1" and grant["organization"] == "acme"
    assert grant["scopes"] == ["event:write"] and grant["agent"] == "claude"
    assert client.get("/api/0/agent/grants/", headers=bearer(writer)).status_code == 403

    db.commit()
    admins = db.scalar(select(WriteGrant.id).where(WriteGrant.session_id == "admins"))
    assert client.delete(f"/api/0/agent/grants/{admins}/",
                         headers=bearer(person)).status_code == 404, "not my grant"
    gone = client.delete(f"/api/0/agent/grants/{grant['id']}/", headers=bearer(person))
    assert gone.status_code == 204, gone.text
    assert client.get("/api/0/agent/grants/", headers=bearer(person)).json() == []
    assert_invalid_token(read_issues(client, writer), "grant revoked")
    db.commit()
    assert db.scalar(select(WriteGrant.id).where(WriteGrant.session_id == "admins")) == admins


def test_a_session_can_only_be_revoked_by_a_persons_credential(
    client: TestClient, db: Session, world: World
) -> None:
    agent = member_agent_token(client, db, sessionId="self")
    response = client.delete("/api/0/organizations/acme/agent/sessions/self/",
                             headers=bearer(agent))
    assert response.status_code == 403, response.text
    assert read_issues(client, agent).status_code == 200


# --- access follows the person's current role ---------------------------------------------


def test_access_is_scopes_intersect_the_current_role(
    client: TestClient, db: Session, world: World
) -> None:
    admin_token = user_token(db, ADMIN, spec.ROLE_SCOPES["admin"])
    csrf = login(client, ADMIN)
    assert approve_via_api(client, csrf, ["project:admin"], session="ops").status_code == 201
    agent = agent_token_for(client, bearer(admin_token), sessionId="ops",
                            requestedScopes=["project:read", "project:write", "project:admin"])
    releases = "/api/0/organizations/acme/releases/"
    created = client.post(releases, json={"version": "1.0.0", "projects": ["web"]},
                          headers=bearer(agent))
    assert created.status_code == 201, created.text

    directory.add_member(db, directory.get_org(db, "acme"),
                         directory.get_user(db, world.users["admin"]), Role.MEMBER)
    db.commit()

    refused = client.post(releases, json={"version": "1.0.1", "projects": ["web"]},
                          headers=bearer(agent))
    assert refused.status_code == 403, refused.text
    assert parse_challenge(refused.headers["www-authenticate"])["error"] == "insufficient_scope"
    deleted = client.delete(f"{releases}1.0.0/", headers=bearer(agent))
    assert deleted.status_code == 403, deleted.text
    # Reading stays: project:read is in both the token and the member role.
    assert client.get(releases, headers=bearer(agent)).status_code == 200

    # Promoted back: the very same token can write again. Access is decided per request.
    directory.add_member(db, directory.get_org(db, "acme"),
                         directory.get_user(db, world.users["admin"]), Role.ADMIN)
    db.commit()
    assert client.post(releases, json={"version": "1.0.2", "projects": ["web"]},
                       headers=bearer(agent)).status_code == 201


# --- JWKS and keys ------------------------------------------------------------------------


def decode_with_jwks(token: str, jwks: dict) -> dict:
    kid = jwt.get_unverified_header(token[4:])["kid"]
    [jwk] = [key for key in jwks["keys"] if key["kid"] == kid]
    return jwt.decode(token[4:], jwt.PyJWK(jwk).key, algorithms=["EdDSA"],
                      audience=f"{BASE_URL}/api/0/", issuer=BASE_URL)


def test_jwks_verifies_a_minted_token_offline(
    client: TestClient, db: Session, world: World
) -> None:
    token = member_agent_token(client, db, sessionId="offline")
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    jwks = response.json()
    assert len(jwks["keys"]) == 1
    [key] = jwks["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA"
    assert key["use"] == "sig"
    assert "d" not in key, "the private part must never be published"
    claims = decode_with_jwks(token, jwks)
    assert claims["sid"] == "offline"
    assert claims["sub"] == str(world.users["member"])
    # A token signed by any other key does not verify against it.
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA",
                        headers={"kid": key["kid"]})
    with pytest.raises(jwt.InvalidSignatureError):
        decode_with_jwks("sga_" + forged, jwks)


def test_rotation_keeps_old_tokens_valid_until_the_old_key_retires(
    client: TestClient, app: FastAPI, db: Session, world: World
) -> None:
    keys: KeyRing = app.state.runtime.keys
    old_kid = keys.active().kid
    old_token = member_agent_token(client, db, sessionId="rot-1")
    # Signed with the old key but not yet presented (so not in any verification cache).
    unseen_old = sign_agent_token(app, valid(app, world, sid="rot-2"))

    new_kid = keys.rotate(db, app.state.runtime.settings.agent_token_max_ttl_seconds)
    db.commit()
    keys.load()
    assert new_kid != old_kid
    assert keys.active().kid == new_kid

    jwks = client.get("/.well-known/jwks.json").json()
    assert {key["kid"] for key in jwks["keys"]} == {old_kid, new_kid}
    assert read_issues(client, old_token).status_code == 200
    new_token = member_agent_token(client, db, sessionId="rot-3")
    assert jwt.get_unverified_header(new_token[4:])["kid"] == new_kid
    assert decode_with_jwks(new_token, jwks)["sid"] == "rot-3"
    assert decode_with_jwks(old_token, jwks)["sid"] == "rot-1"

    db.expire_all()
    retired = db.get(SigningKey, old_kid)
    assert retired is not None and not retired.active
    assert retired.retire_after is not None
    assert retired.retire_after >= utcnow() + timedelta(seconds=3600)

    db.execute(update(SigningKey).where(SigningKey.kid == old_kid)
               .values(retire_after=utcnow() - timedelta(seconds=1)))
    db.commit()
    keys.load()
    jwks = client.get("/.well-known/jwks.json").json()
    assert [key["kid"] for key in jwks["keys"]] == [new_kid]
    assert_invalid_token(read_issues(client, unseen_old), "retired key")
    assert read_issues(client, new_token).status_code == 200


def on_event_loop() -> bool:
    """Whether this thread runs an event loop (the loop itself, or its greenlets)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_a_key_rotated_by_another_process_is_picked_up(
    client: TestClient, app: FastAPI, database_url: str, world: World, db: Session,
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keys are shared through the database: a token signed with a key another process
    just rotated in verifies here at once (an unknown ``kid`` reloads the ring). The
    reload is never waited for on the event loop: the loop asks without waiting, which
    starts the reload in the background; the decision is then asked again with a
    connection, and waits, if the reload has not finished by then, in a worker thread.
    (On PostgreSQL the reload may finish while the loop awaits its connection: then no
    thread is needed at all.)"""
    asked: list[tuple[bool, bool]] = []  # (may_wait, on an event loop) of each lookup
    public_key = KeyRing.public_key

    def recorded(ring: KeyRing, kid: str, *, may_wait: bool = True) -> object:
        asked.append((may_wait, on_event_loop()))
        return public_key(ring, kid, may_wait=may_wait)

    old_kid = app.state.runtime.keys.active().kid
    other = create_app(make_settings(database_url))
    request.addfinalizer(other.state.runtime.engine.dispose)
    other_keys: KeyRing = other.state.runtime.keys
    with other.state.runtime.factory() as other_db:
        new_kid = other_keys.rotate(other_db, 3600)
        other_db.commit()
    other_keys.load()
    person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    with TestClient(other, base_url=BASE_URL) as other_client:
        token = agent_token_for(other_client, bearer(person), sessionId="elsewhere")
    assert jwt.get_unverified_header(token[4:])["kid"] == new_kid != old_kid
    monkeypatch.setattr(KeyRing, "public_key", recorded)
    with thread_hops(monkeypatch) as hops:
        assert read_issues(client, token).status_code == 200
    assert asked[0] == (False, True), "first asked on the loop, without waiting"
    assert (True, True) not in asked, f"a lookup waited on the event loop: {asked}"
    if (True, False) in asked:  # it waited: in the worker thread the gate hopped to
        assert hops == ["run_with_connection"], hops
    else:
        assert hops in ([], ["run_with_connection"]), hops
    listed = {key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]}
    assert listed == {old_kid, new_kid}


def test_private_keys_are_stored_encrypted(app: FastAPI, db: Session, world: World) -> None:
    keys: KeyRing = app.state.runtime.keys
    active = keys.active()
    raw = active.key.private_bytes(serialization.Encoding.Raw,
                                   serialization.PrivateFormat.Raw,
                                   serialization.NoEncryption())
    row = db.scalar(select(SigningKey).where(SigningKey.kid == active.kid))
    assert row is not None
    sealed = bytes(row.private_key_encrypted)
    assert raw not in sealed
    assert len(sealed) == 12 + 32 + 16, "nonce + ciphertext + GCM tag"
    pem = active.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    assert pem not in sealed and b64(raw).encode() not in sealed

    opened = KeyEncryption(SECRET).open(active.kid, sealed)
    assert opened.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption()) == raw
    with pytest.raises(SecretMismatch):
        KeyEncryption(SECRET + "-other").open(active.kid, sealed)
    with pytest.raises(SecretMismatch):
        KeyEncryption(SECRET).open("another-kid", sealed)  # the kid is bound as AAD
    # A server started with another secret cannot load the ring.
    with pytest.raises(SecretMismatch):
        KeyRing(app.state.runtime.factory, SECRET + "-other").load()
