"""Secrets never reach a log record or an error response: not the token, not its hash.

Every logger is captured at DEBUG while credentials are created, used, revoked, presented
against the wrong organization and presented as garbage; then every record (message,
arguments, exception text, extra attributes) and every error response is searched for
each secret, its SHA-256, and the secret part of org tokens.
"""

from __future__ import annotations

import hashlib
import logging
import re

from sqlalchemy import update

from scopegate.store.models import UserToken
from support.http import bearer, login
from support.settings import PASSWORD
from support.world import org_token, user_token

LOGGERS = (
    None, "scopegate", "scopegate.security", "scopegate.web", "uvicorn", "uvicorn.error",
    "uvicorn.access", "fastapi", "starlette", "httpx", "httpcore",
)
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
_NEW_TOKEN = re.compile(r'data-testid="new-token">([^<]+)<')


def capture_everything(caplog) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)


def forms_of(secret: str) -> set[str]:
    """The secret, its hash, and (org tokens) the random part after the payload."""
    forms = {secret, hashlib.sha256(secret.encode()).hexdigest()}
    if secret.startswith("sgo_"):
        forms.add(secret.rsplit("_", 1)[1])
    return forms


def rendered(record: logging.LogRecord) -> str:
    text = logging.Formatter("%(name)s %(levelname)s %(message)s").format(record)
    return "\n".join([text, repr(record.args), repr(record.__dict__)])


def leaks(records, responses, secrets: set[str]) -> list[str]:
    found = []
    for record in records:
        text = rendered(record)
        found += [f"log {record.name}: {s[:12]}…" for s in secrets if s in text]
    for response in responses:
        if response.status_code < 400:
            continue
        text = response.text + repr(dict(response.headers))
        found += [
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code}: {s[:12]}…"
            for s in secrets
            if s in text
        ]
    return found


def test_the_leak_detector_finds_a_leak():
    secret = "sgo_eyJvcmciOiJhIn0_" + "ab" * 32
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "got %s", ("ab" * 32,), None)
    assert leaks([record], [], forms_of(secret))
    hashed = logging.LogRecord(
        "x", logging.INFO, __file__, 1, hashlib.sha256(secret.encode()).hexdigest(), (), None
    )
    assert leaks([hashed], [], forms_of(secret))


def test_no_secret_is_logged_or_echoed_in_errors(app, client, db, world, caplog):
    capture_everything(caplog)
    secrets: set[str] = set()
    responses = []

    def call(method, path, token=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers.update(bearer(token))
        response = client.request(method, path, headers=headers, **kwargs)
        responses.append(response)
        return response

    # Valid credentials in use.
    owner = user_token(db, "owner@acme.test", {"org:admin", "event:admin", "project:admin"})
    ci = org_token(db, "acme")
    secrets |= forms_of(owner) | forms_of(ci)
    assert call("GET", "/api/0/organizations/acme/", owner).status_code == 200
    assert call("PUT", f"/api/0/organizations/acme/issues/{world.issue_ids[0]}/", owner,
                json={"status": "resolved"}).status_code == 200
    assert call("POST", "/api/0/organizations/acme/releases/", ci,
                json={"version": "1.0", "projects": ["web"]}).status_code == 201
    # Insufficient scope, cross-organization, wrong credential kind.
    assert call("DELETE", "/api/0/organizations/acme/releases/1.0/", ci).status_code == 403
    assert call("GET", "/api/0/organizations/globex/releases/", ci).status_code == 404
    assert call("GET", "/api/0/api-tokens/", ci).status_code == 403

    # Creation through the API: the new secrets must not be logged either.
    created = call("POST", "/api/0/api-tokens/", owner, json={"scopes": ["org:read"]})
    new_user_token = created.json()["token"]
    made = call("POST", "/api/0/organizations/acme/org-auth-tokens/", owner, json={})
    new_org_token = made.json()["token"]
    secrets |= forms_of(new_user_token) | forms_of(new_org_token)

    # Revoked and expired.
    call("DELETE", f"/api/0/api-tokens/{created.json()['id']}/", owner)
    assert call("GET", "/api/0/organizations/", new_user_token).status_code == 401
    call("DELETE", f"/api/0/organizations/acme/org-auth-tokens/{made.json()['id']}/", owner)
    assert call("GET", "/api/0/organizations/acme/releases/", new_org_token).status_code == 401
    expired = user_token(db, "member@acme.test", {"org:read"})
    secrets |= forms_of(expired)
    db.execute(update(UserToken).where(UserToken.token_hash.in_(forms_of(expired)))
               .values(revoked_at=None, expires_at=UserToken.created_at))
    db.commit()
    assert call("GET", "/api/0/organizations/", expired).status_code == 401

    # Garbage: near-misses of real tokens, unknown prefixes, oversized, non-ASCII.
    garbage = [
        owner[:-1] + ("A" if owner[-1] != "A" else "B"),
        ci[:-2] + "00",
        "sgu_" + "Z" * 43,
        "sgo_" + "x" * 60 + "_" + "f" * 64,
        "ghp_" + "q" * 36,
        "sga_eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "sgu_" + "L" * 5000,
    ]
    for token in garbage:
        secrets |= forms_of(token)
        assert call("GET", "/api/0/organizations/acme/", token).status_code == 401
    assert call("GET", "/api/0/organizations/", headers={
        "Authorization": "Bearer sgu_caf\u00e9-secret".encode()}).status_code == 401
    secrets.add("sgu_caf")

    # The browser: a wrong password, a login, and a token made through the form.
    wrong = "hunter2-wrong-password"
    secrets |= {wrong, PASSWORD}
    page = client.get("/login")
    form_csrf = _CSRF_INPUT.search(page.text).group(1)
    failed = client.post("/login", data={"email": "owner@acme.test", "password": wrong,
                                         "csrf_token": form_csrf})
    assert failed.status_code == 401
    assert wrong not in failed.text
    csrf = login(client, "owner@acme.test")
    cookie = client.cookies.get("sg_session")
    secrets |= {cookie, csrf}
    form = client.post("/account/tokens", data={"csrf_token": csrf, "scopes": ["org:read"],
                                                "name": "form", "expires": "1d"})
    assert form.status_code == 201
    secrets |= forms_of(_NEW_TOKEN.search(form.text).group(1).strip())
    assert call("PUT", "/api/0/organizations/acme/", json={"name": "Acme"}).status_code == 403
    assert call("PUT", "/api/0/organizations/acme/", json={"name": "Acme"},
                headers={"X-CSRF-Token": csrf[::-1]}).status_code == 403

    security = [r for r in caplog.records if r.name == "scopegate.security"]
    assert security, "capture is not working: the cross-organization attempt left no record"
    found = leaks(caplog.records, responses, {s for s in secrets if len(s) >= 7})
    assert not found, "secrets leaked:\n" + "\n".join(sorted(set(found)))
