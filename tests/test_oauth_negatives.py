"""RFC 9700's negatives against the authorization server, in process, on both databases:
PKCE, redirect URI tricks, code replay, refresh-token reuse, scope widening, client
authentication, organization binding and resource indicators. Each sends the attack and
checks the refusal, and where it matters that the legitimate path still works."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from scopegate.services.oauth.tokens import token_hash
from support.http import bearer, login
from support.oauth import (
    REDIRECT_URI,
    authorize_params,
    consent_form,
    decide,
    pkce,
    query_of,
    register,
)
from support.settings import OAUTH_BASE_URL
from support.world import World

LOOPBACK = OAUTH_BASE_URL
ISSUES = "/api/0/organizations/acme/issues/"


def _authorize(web: TestClient, params: dict[str, str]):
    return web.get("/oauth/authorize?" + urlencode(params), follow_redirects=False)


def _code(web: TestClient, client_id: str, challenge: str, orgs: tuple[str, ...] = ("acme",),
          **extra: str) -> str:
    page = _authorize(web, authorize_params(client_id, challenge, **extra))
    answer = decide(web, page, "approve", orgs)
    assert answer.status_code == 303, answer.text[:300]
    return query_of(answer.headers["location"])["code"]


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _exchange(web: TestClient, client_id: str, secret: str | None, code: str, verifier: str,
              **extra: str):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier, **extra}
    if secret is None:
        return web.post("/oauth/token", data={**data, "client_id": client_id})
    return web.post("/oauth/token", data=data, headers=_basic(client_id, secret))


# -- PKCE --------------------------------------------------------------------------------

@pytest.mark.parametrize("pkce_params", [
    {"code_challenge": "", "code_challenge_method": ""},
    {"code_challenge_method": "plain"},
], ids=["missing", "plain"])
def test_authorization_without_s256_pkce_is_refused(signed_in: TestClient, confidential,
                                                    pkce_params: dict[str, str]) -> None:
    _, challenge = pkce()
    params = {k: v for k, v in {**authorize_params(confidential.client.client_id, challenge),
                                **pkce_params}.items() if v}
    answer = _authorize(signed_in, params)
    assert answer.status_code == 303
    returned = query_of(answer.headers["location"])
    assert returned["error"] == "invalid_request"
    assert returned["state"] == "st-123"
    assert "code" not in returned


def test_a_wrong_code_verifier_is_refused(signed_in: TestClient, confidential) -> None:
    _verifier, challenge = pkce()
    code = _code(signed_in, confidential.client.client_id, challenge)
    other, _ = pkce()
    wrong = _exchange(signed_in, confidential.client.client_id, confidential.client_secret,
                      code, other)
    assert wrong.json()["error"] == "invalid_grant", wrong.text
    assert wrong.status_code == 400


# -- redirect URIs -----------------------------------------------------------------------

@pytest.mark.parametrize("presented", [
    REDIRECT_URI + "/extra",
    REDIRECT_URI + "?next=https://evil.test",
    "http://evil@127.0.0.1:9999/callback",
    "https://evil.test/callback",
    "http://localhost:9999/callback",
], ids=["extra-path", "query", "userinfo", "other-host", "other-loopback-name"])
def test_redirect_uri_tricks_get_an_error_page_never_a_redirect(
        signed_in: TestClient, confidential, presented: str) -> None:
    _, challenge = pkce()
    answer = _authorize(signed_in, authorize_params(confidential.client.client_id, challenge,
                                                    redirect_uri=presented))
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert "evil" not in answer.text


def test_another_port_matches_only_on_loopback(signed_in: TestClient, session: Session,
                                               people: World) -> None:
    app = register(session, people.users["owner"],
                   redirect_uris=("https://app.example.com/cb", REDIRECT_URI))
    _, challenge = pkce()
    other_port = _authorize(signed_in, authorize_params(
        app.client.client_id, challenge, redirect_uri="https://app.example.com:8443/cb"))
    assert other_port.status_code == 400
    assert "location" not in other_port.headers
    loopback = _authorize(signed_in, authorize_params(
        app.client.client_id, challenge, redirect_uri="http://127.0.0.1:51234/callback"))
    assert loopback.status_code == 200  # RFC 8252 §7.3: the consent page
    assert 'name="orgs"' in loopback.text


def test_an_unknown_client_gets_an_error_page(signed_in: TestClient) -> None:
    _, challenge = pkce()
    answer = _authorize(signed_in, authorize_params("no-such-client", challenge))
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert "no-such-client" not in answer.text


# -- codes and refresh tokens ------------------------------------------------------------

def test_a_replayed_code_is_refused_and_revokes_the_tokens_it_produced(
        signed_in: TestClient, confidential) -> None:
    verifier, challenge = pkce()
    client_id, secret = confidential.client.client_id, confidential.client_secret
    code = _code(signed_in, client_id, challenge)
    first = _exchange(signed_in, client_id, secret, code, verifier)
    assert first.status_code == 200
    access = first.json()["access_token"]
    assert signed_in.get(ISSUES, headers=bearer(access)).status_code == 200
    replay = _exchange(signed_in, client_id, secret, code, verifier)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert signed_in.get(ISSUES, headers=bearer(access)).status_code == 401


def _tokens(web: TestClient, app, **extra: str) -> dict[str, str]:
    verifier, challenge = pkce()
    code = _code(web, app.client.client_id, challenge, **extra)
    answer = _exchange(web, app.client.client_id, app.client_secret, code, verifier)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _refresh(web: TestClient, app, refresh: str, **extra: str):
    return web.post("/oauth/token", data={"grant_type": "refresh_token",
                                          "refresh_token": refresh, **extra},
                    headers=_basic(app.client.client_id, app.client_secret))


def test_refresh_token_reuse_revokes_the_whole_family(signed_in: TestClient,
                                                      confidential) -> None:
    first = _tokens(signed_in, confidential)
    second = _refresh(signed_in, confidential, first["refresh_token"]).json()
    assert signed_in.get(ISSUES, headers=bearer(second["access_token"])).status_code == 200
    reuse = _refresh(signed_in, confidential, first["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    assert signed_in.get(ISSUES, headers=bearer(second["access_token"])).status_code == 401
    after = _refresh(signed_in, confidential, second["refresh_token"])
    assert after.json()["error"] == "invalid_grant"


def test_refresh_may_narrow_scopes_but_never_widen_them(signed_in: TestClient,
                                                        confidential) -> None:
    first = _tokens(signed_in, confidential)
    wider = _refresh(signed_in, confidential, first["refresh_token"],
                     scope="event:read project:read event:write")
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"
    narrower = _refresh(signed_in, confidential, first["refresh_token"], scope="event:read")
    assert narrower.status_code == 200, narrower.text
    assert narrower.json()["scope"] == "event:read"


# -- client authentication ---------------------------------------------------------------

def test_a_public_client_that_sends_a_secret_is_refused(signed_in: TestClient,
                                                        session: Session,
                                                        people: World) -> None:
    app = register(session, people.users["owner"], public=True)
    verifier, challenge = pkce()
    code = _code(signed_in, app.client.client_id, challenge)
    with_secret = _exchange(signed_in, app.client.client_id, "made-up-secret", code, verifier)
    assert with_secret.status_code == 401
    assert with_secret.json()["error"] == "invalid_client"
    without = _exchange(signed_in, app.client.client_id, None, code, verifier)
    assert without.status_code == 200, without.text
    assert without.json()["refresh_token"].startswith("sgr_")


def test_a_confidential_client_without_its_secret_is_refused(signed_in: TestClient,
                                                             confidential) -> None:
    verifier, challenge = pkce()
    code = _code(signed_in, confidential.client.client_id, challenge)
    answer = _exchange(signed_in, confidential.client.client_id, None, code, verifier)
    assert answer.status_code in (400, 401)
    assert answer.json()["error"] == "invalid_client"
    wrong = _exchange(signed_in, confidential.client.client_id, "wrong-secret", code, verifier)
    assert wrong.json()["error"] == "invalid_client"


# -- organizations and resources ---------------------------------------------------------

def test_an_org_bound_token_is_refused_on_another_organization(
        web: TestClient, session: Session, people: World) -> None:
    login(web, World.email("owner"))
    # The owner of acme is made a member of globex too, so both are offered.
    from scopegate.services import directory

    directory.add_member(session, directory.get_org(session, "globex"),
                         directory.get_user(session, people.users["owner"]), "member")
    session.commit()
    app = register(session, people.users["owner"], org_bound=True)
    verifier, challenge = pkce()
    page = _authorize(web, authorize_params(app.client.client_id, challenge))
    both = decide(web, page, "approve", ("acme", "globex"))
    assert both.status_code == 400  # exactly one organization for an org-bound app
    code = _code(web, app.client.client_id, challenge, orgs=("acme",))
    token = _exchange(web, app.client.client_id, app.client_secret, code, verifier).json()
    assert web.get(ISSUES, headers=bearer(token["access_token"])).status_code == 200
    other = web.get("/api/0/organizations/globex/issues/", headers=bearer(token["access_token"]))
    assert other.status_code == 404
    listed = web.get("/api/0/organizations/", headers=bearer(token["access_token"]))
    assert [org["slug"] for org in listed.json()] == ["acme"]  # globex was not chosen


def test_a_token_is_refused_at_a_resource_it_was_not_issued_for(signed_in: TestClient,
                                                                 confidential) -> None:
    mcp = _tokens(signed_in, confidential, resource=LOOPBACK + "/mcp")
    answer = signed_in.get(ISSUES, headers=bearer(mcp["access_token"]))
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    api = _tokens(signed_in, confidential, resource=LOOPBACK + "/api/0/")
    assert signed_in.get(ISSUES, headers=bearer(api["access_token"])).status_code == 200


def test_an_unknown_resource_is_invalid_target(signed_in: TestClient, confidential) -> None:
    _, challenge = pkce()
    answer = _authorize(signed_in, authorize_params(confidential.client.client_id, challenge,
                                                    resource="https://evil.test/api"))
    assert answer.status_code == 303
    assert query_of(answer.headers["location"])["error"] == "invalid_target"
    verifier, challenge = pkce()
    code = _code(signed_in, confidential.client.client_id, challenge)
    other = _exchange(signed_in, confidential.client.client_id, confidential.client_secret,
                      code, verifier, resource=LOOPBACK + "/mcp")
    assert other.status_code == 400
    assert other.json()["error"] == "invalid_target"


# -- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("grant_type",
                         ["password", "implicit", 'x"\\<script>', "client_credentials"])
def test_unsupported_grants_are_refused_without_echo(web: TestClient, grant_type: str) -> None:
    answer = web.post("/oauth/token", data={"grant_type": grant_type})
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"
    assert "<script>" not in answer.text


def test_odd_authorization_requests_never_fail_with_a_500(signed_in: TestClient,
                                                          confidential) -> None:
    _, challenge = pkce()
    base = authorize_params(confidential.client.client_id, challenge)
    for change in ({"response_type": 'token"\\'}, {"response_type": "token"},
                   {"scope": 'nope "quoted"'}, {"state": "x" * 3000},
                   {"code_challenge": "short"}):
        answer = _authorize(signed_in, {**base, **change})
        assert answer.status_code in (303, 400), (change, answer.status_code)
        assert '"quoted"' not in answer.headers.get("location", "")


# -- the consent page --------------------------------------------------------------------

def test_the_consent_page_cannot_be_framed_and_sends_forms_only_to_us_and_the_client(
        signed_in: TestClient, confidential) -> None:
    _, challenge = pkce()
    page = _authorize(signed_in, authorize_params(confidential.client.client_id, challenge))
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    policy = {d.split()[0]: d.split()[1:] for d in
              page.headers["content-security-policy"].split("; ")}
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'", "http://127.0.0.1:9999"]
    assert 'name="csrf_token"' in page.text


def test_a_consent_without_the_csrf_token_is_refused(signed_in: TestClient,
                                                     confidential) -> None:
    _, challenge = pkce()
    page = _authorize(signed_in, authorize_params(confidential.client.client_id, challenge))
    forged = {k: v for k, v in consent_form(page) if k != "csrf_token"}
    answer = signed_in.post("/oauth/authorize", data={**forged, "decision": "approve",
                                                      "orgs": "acme"},
                            follow_redirects=False)
    assert answer.status_code == 403
    assert "location" not in answer.headers


def _hidden(page):
    from support.oauth import consent_form

    return consent_form(page)


# -- dynamic registrations expire unless used ---------------------------------------------

def _register_dynamically(web: TestClient) -> str:
    answer = web.post("/oauth/register", json={
        "client_name": "Drive-by", "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none", "application_type": "native"})
    assert answer.status_code == 201, answer.text
    return answer.json()["client_id"]


def _age_registrations(session: Session) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from scopegate.store.oauth_models import OAuthClient
    from scopegate.store.types import utcnow

    session.execute(update(OAuthClient).where(OAuthClient.expires_at.is_not(None))
                    .values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()


def test_a_registration_never_used_expires_and_is_purged(signed_in: TestClient,
                                                         session: Session) -> None:
    from scopegate.services.oauth import clients

    unused = _register_dynamically(signed_in)
    used = _register_dynamically(signed_in)
    verifier, challenge = pkce()
    code = _code(signed_in, used, challenge)
    assert _exchange(signed_in, used, None, code, verifier).status_code == 200
    _age_registrations(session)  # the registration window has passed

    _, challenge = pkce()
    refused = _authorize(signed_in, authorize_params(unused, challenge))
    assert refused.status_code == 400 and "location" not in refused.headers
    still = _authorize(signed_in, authorize_params(used, challenge))
    assert still.status_code == 200  # it completed an authorization: it stays
    assert clients.purge_unused_registrations(session) == 1
    session.commit()
    from sqlalchemy import select

    from scopegate.store.oauth_models import OAuthClient

    remaining = set(session.scalars(select(OAuthClient.client_id)))
    assert used in remaining and unused not in remaining


def test_codes_and_tokens_are_purged_a_day_after_they_expire(signed_in: TestClient,
                                                               session: Session,
                                                               confidential) -> None:
    from datetime import timedelta

    from sqlalchemy import func, select, update

    from scopegate.services.oauth.purge import purge_expired
    from scopegate.store.oauth_models import OAuthCode, OAuthToken
    from scopegate.store.types import utcnow

    fresh = _tokens(signed_in, confidential)
    old = _tokens(signed_in, confidential)
    codes = session.scalar(select(func.count()).select_from(OAuthCode))
    assert purge_expired(session) == 0  # nothing has expired yet
    session.commit()
    old_hashes = [token_hash(old["access_token"]), token_hash(old["refresh_token"])]
    session.execute(update(OAuthToken).where(OAuthToken.token_hash.in_(old_hashes))
                    .values(expires_at=utcnow() - timedelta(days=2)))
    session.execute(update(OAuthCode).values(expires_at=utcnow() - timedelta(days=2)))
    session.commit()
    assert purge_expired(session) == codes + 2
    session.commit()
    assert session.scalar(select(func.count()).select_from(OAuthToken)) == 2
    assert signed_in.get(ISSUES, headers=bearer(fresh["access_token"])).status_code == 200
    gone = _refresh(signed_in, confidential, old["refresh_token"])
    assert gone.json()["error"] == "invalid_grant"


# -- discovery ---------------------------------------------------------------------------

def test_the_metadata_lists_exactly_what_is_supported(web: TestClient) -> None:
    from scopegate.core import scopes as registry

    answer = web.get("/.well-known/oauth-authorization-server")
    assert answer.status_code == 200
    meta = answer.json()
    base = OAUTH_BASE_URL
    assert meta["issuer"] == base
    assert {k: meta[k] for k in ("authorization_endpoint", "token_endpoint",
                                 "revocation_endpoint", "introspection_endpoint",
                                 "registration_endpoint",
                                 "device_authorization_endpoint")} == {
        "authorization_endpoint": base + "/oauth/authorize",
        "token_endpoint": base + "/oauth/token", "revocation_endpoint": base + "/oauth/revoke",
        "introspection_endpoint": base + "/oauth/introspect",
        "registration_endpoint": base + "/oauth/register",
        "device_authorization_endpoint": base + "/oauth/device/code"}
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["grant_types_supported"]) == {
        "authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"}
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "none"}
    assert set(meta["scopes_supported"]) == registry.ALL_SCOPES - registry.TOKEN_ONLY_SCOPES
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["client_id_metadata_document_supported"] is True
    # Every endpoint it names answers (none is a 404).
    for key in ("token_endpoint", "revocation_endpoint", "introspection_endpoint",
                "device_authorization_endpoint"):
        assert web.post(meta[key].removeprefix(base), data={}).status_code != 404, key


def test_introspection_answers_a_confidential_client_about_its_own_tokens_only(
        signed_in: TestClient, session: Session, people: World, confidential) -> None:
    other = register(session, people.users["owner"], name="Other app")
    public = register(session, people.users["owner"], public=True, name="Public app")
    mine = _tokens(signed_in, confidential)["access_token"]

    def introspect(client_id: str, secret: str | None):
        if secret is None:
            return signed_in.post("/oauth/introspect", data={"token": mine,
                                                             "client_id": client_id})
        return signed_in.post("/oauth/introspect", data={"token": mine},
                              headers=_basic(client_id, secret))

    assert introspect(confidential.client.client_id,
                      confidential.client_secret).json()["active"] is True
    assert introspect(other.client.client_id, other.client_secret).json() == {"active": False}
    refused = introspect(public.client.client_id, None)
    assert refused.status_code in (400, 401)
    assert refused.json()["error"] == "invalid_client"


def test_only_scopes_the_person_holds_are_granted(signed_in: TestClient, confidential) -> None:
    """acme's member holds no org:admin: asked for it, the token does not carry it."""
    granted = _tokens(signed_in, confidential, scope="event:read org:admin")
    assert granted["scope"] == "event:read"
    _, challenge = pkce()
    page = _authorize(signed_in, authorize_params(confidential.client.client_id, challenge,
                                                  scope="org:admin"))
    assert "You do not hold this scope" in page.text
    refused = decide(signed_in, page, "approve")
    assert refused.status_code == 400  # nothing requested is held: no code is issued
    assert "location" not in refused.headers
