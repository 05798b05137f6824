"""A browser session changes nothing without its CSRF token; logging out ends it for good."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from scopegate.services import credentials, directory, releases
from scopegate.store.models import Issue, Organization, OrgToken, Release, UserToken, WebSession
from support.http import bearer, login
from support.settings import BASE_URL
from support.world import user_token

A = "/api/0/organizations/acme"
COOKIE = "sg_session"


def _count(db, model) -> int:
    db.commit()  # a fresh snapshot: see what the app committed
    return db.scalar(select(func.count()).select_from(model))


def _scalar(db, statement):
    db.commit()
    return db.scalar(statement)


def write_rows(db, world):
    """(label, method, path, body, state) where ``state()`` reads what the call changes."""
    releases.create_release(db, world.orgs["acme"], "1.0", ["web"])
    owner = directory.get_user_by_email(db, "owner@acme.test")
    mine = credentials.create_user_token(db, owner, frozenset({"org:read"})).row.id
    db.commit()
    issue = world.issue_ids[0]
    return [
        ("rename org", "PUT", f"{A}/", {"name": "Renamed"},
         lambda: _scalar(db, select(Organization.name).where(Organization.slug == "acme"))),
        ("resolve issue", "PUT", f"{A}/issues/{issue}/", {"status": "resolved"},
         lambda: _scalar(db, select(Issue.status).where(Issue.id == issue))),
        ("create release", "POST", f"{A}/releases/", {"version": "2.0", "projects": ["web"]},
         lambda: _count(db, Release)),
        ("delete release", "DELETE", f"{A}/releases/1.0/", None,
         lambda: _scalar(db, select(Release.id).where(Release.version == "1.0"))),
        ("create token", "POST", "/api/0/api-tokens/", {"scopes": ["org:read"]},
         lambda: _count(db, UserToken)),
        ("revoke token", "DELETE", f"/api/0/api-tokens/{mine}/", None,
         lambda: _scalar(db, select(UserToken.revoked_at).where(UserToken.id == mine))),
        ("create org token", "POST", f"{A}/org-auth-tokens/", {"name": "ci"},
         lambda: _count(db, OrgToken)),
    ]


def test_session_writes_need_the_right_csrf_header(client, db, world):
    csrf = login(client, "owner@acme.test")
    wrong = []
    for label, method, path, body, state in write_rows(db, world):
        before = state()
        for header in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": csrf.upper()},
                       {"X-CSRF-Token": ""}, {"X-CSRF-Token": csrf + "0"}):
            response = client.request(method, path, json=body, headers=header)
            if response.status_code != 403 or "CSRF" not in response.json().get("detail", ""):
                wrong.append(f"{label} with {header}: {response.status_code} {response.text}")
            if state() != before:
                wrong.append(f"{label} with {header}: changed {before!r} -> {state()!r}")
        response = client.request(method, path, json=body, headers={"X-CSRF-Token": csrf})
        if response.status_code not in (200, 201, 204):
            wrong.append(f"{label} with the right token: {response.status_code} {response.text}")
        elif state() == before:
            wrong.append(f"{label} with the right token changed nothing")
    assert not wrong, "\n".join(wrong)


def test_a_csrf_token_is_bound_to_its_session(app, client, db, world):
    mine = login(client, "owner@acme.test")
    with TestClient(app, base_url=BASE_URL) as other:
        theirs = login(other, "owner@acme.test")
    assert theirs != mine
    response = client.put(f"{A}/", json={"name": "Renamed"}, headers={"X-CSRF-Token": theirs})
    assert response.status_code == 403
    assert _scalar(db, select(Organization.name).where(Organization.slug == "acme")) == "Acme"


def test_session_reads_need_no_csrf_header(client, world):
    login(client, "member@acme.test")
    assert client.get(f"{A}/issues/").status_code == 200
    assert client.get("/api/0/api-tokens/").status_code == 200


def test_bearer_writes_need_no_csrf_header(client, db, world):
    token = user_token(db, "owner@acme.test", {"org:admin"})
    assert client.put(f"{A}/", json={"name": "Renamed"}, headers=bearer(token)).status_code == 200


_NEW_TOKEN = re.compile(r'data-testid="new-token"')


def test_the_token_form_needs_its_csrf_field(client, db, world):
    csrf = login(client, "member@acme.test")
    form = {"scopes": ["org:read"], "name": "form", "expires": "1d"}
    for presented in (None, "", "0" * 64, csrf[:-1]):
        data = form if presented is None else {**form, "csrf_token": presented}
        response = client.post("/account/tokens", data=data)
        assert response.status_code == 403, presented
        assert not _NEW_TOKEN.search(response.text)
    assert _count(db, UserToken) == 0

    created = client.post("/account/tokens", data={**form, "csrf_token": csrf})
    assert created.status_code == 201
    assert _NEW_TOKEN.search(created.text)
    assert _count(db, UserToken) == 1


def test_the_revoke_form_needs_its_csrf_field(client, db, world):
    csrf = login(client, "member@acme.test")
    token = user_token(db, "member@acme.test", {"org:read"})
    token_id = credentials.find_by_secret(db, UserToken, token).id
    refused = client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": "x"})
    assert refused.status_code == 403
    assert client.get("/api/0/organizations/", headers=bearer(token)).status_code == 200
    done = client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf},
                       follow_redirects=False)
    assert done.status_code == 303
    assert client.get("/api/0/organizations/", headers=bearer(token)).status_code == 401


def test_the_login_form_needs_its_csrf_field(client, world):
    client.get("/login")
    response = client.post("/login", data={"email": "owner@acme.test",
                                           "password": "correct horse battery"},
                           follow_redirects=False)
    assert response.status_code == 403
    assert COOKIE not in client.cookies
    assert client.get("/api/0/organizations/").status_code == 401


def test_logout_needs_its_csrf_field(client, world):
    login(client, "member@acme.test")
    response = client.post("/logout", data={}, follow_redirects=False)
    assert response.status_code == 403
    assert client.get("/api/0/organizations/").status_code == 200


def test_logout_ends_the_session_on_the_server(app, client, db, world):
    csrf = login(client, "member@acme.test")
    cookie = client.cookies.get(COOKIE)
    assert cookie
    assert _count(db, WebSession) == 1

    response = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert _count(db, WebSession) == 0

    # The old cookie, replayed by someone who kept it, is worth nothing now.
    with TestClient(app, base_url=BASE_URL, cookies={COOKIE: cookie}) as replay:
        assert replay.get("/api/0/organizations/").status_code == 401
        write = replay.put(f"{A}/issues/{world.issue_ids[0]}/", json={"status": "ignored"},
                           headers={"X-CSRF-Token": csrf})
        assert write.status_code == 401
        page = replay.get("/account", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/login")
    assert _scalar(db, select(Issue.status).where(Issue.id == world.issue_ids[0])) == (
        "unresolved"
    )
