"""A credential is never honored outside its organization, and says nothing about others.

Another organization, one the caller does not belong to and one that does not exist all
answer the same 404. A bound credential presented elsewhere is logged (security log,
naming the credential, never its secret) and audited.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

import spec
from scopegate.services import credentials, releases
from scopegate.services.credentials import token_hash
from scopegate.store.models import AuditEvent, OrgToken, Release
from support.http import bearer, login
from support.world import org_token, user_token

NOT_FOUND = {"detail": "organization not found"}

#: (method, path under /api/0/organizations/{org}, body) an org token may use at home.
ORG_TOKEN_REQUESTS = [
    ("GET", "/", None),
    ("GET", "/releases/", None),
    ("POST", "/releases/", {"version": "stolen-1", "projects": ["backend"]}),
    ("PUT", "/releases/1.0/", {"ref": "evil"}),
    ("GET", "/issues/", None),
]


def _org_token_row(db, token: str) -> OrgToken:
    row = credentials.find_by_secret(db, OrgToken, token)
    assert row is not None
    return row


def test_an_org_token_of_acme_gets_404_in_globex_and_is_logged(client, db, world, caplog):
    releases.create_release(db, world.orgs["globex"], "1.0", ["backend"])
    db.commit()
    token = org_token(db, "acme")
    ref = f"org_token:{_org_token_row(db, token).id}"
    caplog.set_level(logging.INFO, logger="scopegate.security")

    for method, path, body in ORG_TOKEN_REQUESTS:
        caplog.clear()
        response = client.request(
            method, f"/api/0/organizations/globex{path}", headers=bearer(token), json=body
        )

        assert response.status_code == 404, (method, path)
        assert response.json() == NOT_FOUND
        security = [r for r in caplog.records if r.name == "scopegate.security"]
        assert security, f"{method} {path}: the cross-organization attempt was not logged"
        message = security[0].getMessage()
        assert security[0].levelno >= logging.WARNING
        assert ref in message
        assert token not in message and token_hash(token) not in message


def test_a_cross_org_attempt_is_audited_in_the_credentials_own_org(client, db, world):
    token = org_token(db, "acme")
    ref = f"org_token:{_org_token_row(db, token).id}"
    assert client.get("/api/0/organizations/globex/", headers=bearer(token)).status_code == 404
    db.commit()  # end the snapshot: see what the app committed
    events = db.scalars(select(AuditEvent).where(AuditEvent.event == "access.cross_org")).all()
    assert [e.org_id for e in events] == [world.orgs["acme"]]
    assert ref in events[0].detail
    assert token not in events[0].detail


def test_a_refused_cross_org_write_changes_nothing(client, db, world):
    releases.create_release(db, world.orgs["globex"], "1.0", ["backend"], ref="good")
    db.commit()
    token = org_token(db, "acme")
    headers = bearer(token)
    client.post("/api/0/organizations/globex/releases/",
                headers=headers, json={"version": "stolen-1", "projects": ["backend"]})
    client.put("/api/0/organizations/globex/releases/1.0/", headers=headers, json={"ref": "evil"})
    db.commit()  # end the snapshot: see what the app committed
    versions = db.scalars(
        select(Release.version).where(Release.org_id == world.orgs["globex"])
    ).all()
    assert versions == ["1.0"]
    assert db.scalar(select(Release.ref).where(Release.version == "1.0")) == "good"


def test_an_org_token_lists_only_its_own_organization(client, db, world):
    response = client.get("/api/0/organizations/", headers=bearer(org_token(db, "acme")))
    assert response.status_code == 200
    assert [org["slug"] for org in response.json()] == ["acme"]


def test_members_of_acme_with_a_user_token_get_404_in_globex(client, db, world):
    for role in spec.ROLES:
        token = user_token(db, f"{role}@acme.test", spec.ALL_SCOPES)
        for path in ("/", "/projects/", "/issues/", f"/issues/{world.globex_issue_id}/",
                     "/releases/", "/org-auth-tokens/"):
            response = client.get(f"/api/0/organizations/globex{path}", headers=bearer(token))
            assert response.status_code == 404, (role, path)
            assert response.json() == NOT_FOUND, (role, path)
        project = client.get("/api/0/projects/globex/backend/", headers=bearer(token))
        assert project.status_code == 404, role


def test_a_browser_session_of_acme_gets_404_in_globex(client, world):
    csrf = login(client, "owner@acme.test")
    assert client.get("/api/0/organizations/globex/").status_code == 404
    put = client.put("/api/0/organizations/globex/", json={"name": "Mine"},
                     headers={"X-CSRF-Token": csrf})
    assert put.status_code == 404
    assert put.json() == NOT_FOUND


def test_a_user_token_lists_only_organizations_its_person_belongs_to(client, db, world):
    token = user_token(db, "member@acme.test", {"org:read"})
    response = client.get("/api/0/organizations/", headers=bearer(token))
    assert [org["slug"] for org in response.json()] == ["acme"]


def test_a_nonexistent_org_answers_exactly_like_a_foreign_one(client, db, world):
    token = user_token(db, "owner@acme.test", spec.ALL_SCOPES)
    for path in ("/", "/projects/", "/issues/", "/issues/1/", "/releases/"):
        missing = client.get(f"/api/0/organizations/no-such-org{path}", headers=bearer(token))
        foreign = client.get(f"/api/0/organizations/globex{path}", headers=bearer(token))
        assert missing.status_code == foreign.status_code == 404, path
        assert missing.json() == foreign.json() == NOT_FOUND, path
        assert missing.headers.get("www-authenticate") == foreign.headers.get(
            "www-authenticate"
        )


def test_another_orgs_resources_are_unreachable_through_your_own_org(client, db, world):
    releases.create_release(db, world.orgs["globex"], "globex-1", ["backend"])
    db.commit()
    token = user_token(db, "owner@acme.test", spec.ALL_SCOPES)
    headers = bearer(token)
    acme = "/api/0/organizations/acme"
    assert client.get(f"{acme}/issues/{world.globex_issue_id}/", headers=headers).status_code == 404
    assert client.put(f"{acme}/issues/{world.globex_issue_id}/", headers=headers,
                      json={"status": "resolved"}).status_code == 404
    assert client.get(f"{acme}/releases/globex-1/", headers=headers).status_code == 404
    assert client.delete(f"{acme}/releases/globex-1/", headers=headers).status_code == 404
    assert client.get("/api/0/projects/acme/backend/", headers=headers).status_code == 404
    created = client.post(f"{acme}/releases/", headers=headers,
                          json={"version": "x", "projects": ["backend"]})
    assert created.status_code == 400
    assert "backend" in created.json()["detail"]
    db.commit()  # end the snapshot: see what the app committed
    assert db.scalar(select(Release.id).where(Release.version == "globex-1")) is not None
