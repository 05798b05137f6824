"""The scope usage page and its "narrow to recommended" action: a confirmation step, then
the narrowing, its audit event, and the narrowed credential refused what it lost."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from scopegate.core import scopes as registry
from scopegate.core.changes import Change, Topic
from scopegate.services import audit
from scopegate.store.integration_models import Integration, ScopeUsage
from scopegate.store.models import AuditEvent, OrgToken
from scopegate.store.outbox import record_change
from support.http import bearer, login
from support.settings import BASE_URL
from support.world import World, org_token, user_token

ACME = "/api/0/organizations/acme"
PAGE = "/organizations/acme/scope-usage"
NARROW = f"{PAGE}/narrow"
CI_SCOPES = ["project:releases", "project:read", "project:write"]
_LINK = re.compile(r'href="(/organizations/acme/scope-usage/narrow\?[^"]+)"')


@pytest.fixture
def browser(app: FastAPI) -> Iterator[TestClient]:
    """A second client for the browser session (no lifespan: the runtime stays up)."""
    client = TestClient(app, base_url=BASE_URL)
    yield client
    client.close()


def _release(client: TestClient, headers: dict[str, str], version: str) -> int:
    return client.post(f"{ACME}/releases/", json={"version": version, "projects": ["web"]},
                       headers=headers).status_code


def _ci_integration(client: TestClient, db: Session) -> tuple[int, dict[str, str]]:
    owner = bearer(user_token(db, World.email("owner"), registry.ALL_SCOPES))
    made = client.post(f"{ACME}/integrations/", json={"name": "Release bot",
                                                      "scopes": CI_SCOPES}, headers=owner)
    assert made.status_code == 201, made.text
    slug = made.json()["slug"]
    token = client.post(f"{ACME}/integrations/{slug}/tokens/", json={}, headers=owner)
    assert token.status_code == 201, token.text
    row = db.scalar(select(Integration).where(Integration.slug == slug))
    assert row is not None
    return row.id, bearer(token.json()["token"])


def _narrow_events(db: Session) -> list[AuditEvent]:
    db.rollback()  # end the read snapshot: see what was committed since
    db.expire_all()
    return list(db.scalars(select(AuditEvent).where(
        AuditEvent.event == audit.Event.SCOPES_NARROW)))


def test_narrowing_an_integration_to_the_recommended_set(
    app: FastAPI, client: TestClient, browser: TestClient, db: Session, world: World
) -> None:
    integration_id, ci = _ci_integration(client, db)
    subject = f"integration:{integration_id}"
    for n in range(2):
        assert _release(client, ci, f"1.0.{n}") == 201
    # It can delete a release now (project:releases): what narrowing will take away.
    assert _release(client, ci, "doomed") == 201
    assert client.delete(f"{ACME}/releases/doomed/", headers=ci).status_code == 204
    app.state.runtime.flush_scope_usage()

    csrf = login(browser, World.email("owner"))
    listing = browser.get(PAGE)
    assert listing.status_code == 200
    assert "Release bot (release-bot)" in listing.text
    assert f'data-subject="{subject}"' in listing.text
    # It deleted a release: project:releases is the least it needs, not org:ci.
    assert "narrow to project:releases" in listing.text

    # Had it only created releases: org:ci.
    _forget_deletes(db, subject)
    listing = browser.get(PAGE)
    assert "narrow to org:ci" in listing.text
    link = unescape(_LINK.search(listing.text).group(1))
    assert f"subject={subject.replace(':', '%3A')}" in link

    confirm = browser.get(link)
    assert confirm.status_code == 200 and 'data-testid="confirm-narrow"' in confirm.text
    assert 'name="scopes" value="org:ci"' in confirm.text
    assert _scopes(db, integration_id) == set(CI_SCOPES)  # the confirmation changes nothing

    form = {"subject": subject, "scopes": ["org:ci"], "days": "30"}
    expired = browser.post(NARROW, data=form, follow_redirects=False)
    assert expired.status_code == 403 and _scopes(db, integration_id) == set(CI_SCOPES)

    done = browser.post(NARROW, data={**form, "csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith(PAGE + "?days=30&narrowed=")
    notice = browser.get(done.headers["location"])
    assert 'data-testid="narrowed"' in notice.text and "Release bot" in notice.text

    assert _scopes(db, integration_id) == {"org:ci"}
    [event] = _narrow_events(db)
    assert event.org_id == world.orgs["acme"] and event.user_id == world.users["owner"]
    assert event.scopes == {"org:ci"}
    assert "integration=release-bot" in event.detail and "project:releases" in event.detail
    # Its live token: still creates releases, no longer deletes them.
    assert _release(client, ci, "1.1.0") == 201
    assert _release(client, ci, "doomed-2") == 201
    refused = client.delete(f"{ACME}/releases/doomed-2/", headers=ci)
    assert refused.status_code == 403
    assert client.get(f"{ACME}/projects/", headers=ci).status_code == 403  # project:read


def _forget_deletes(db: Session, subject: str) -> None:
    """Forget the credential's DELETE calls, as a window that did not see them would."""
    db.rollback()  # a fresh snapshot before writing (SQLite)
    db.execute(delete(ScopeUsage).where(ScopeUsage.subject == subject,
                                        ScopeUsage.method == "DELETE"))
    db.commit()


def _scopes(db: Session, integration_id: int) -> set[str]:
    db.rollback()  # end the read snapshot: see what was committed since
    db.expire_all()
    return set(db.get(Integration, integration_id).scopes)


def test_narrowing_an_org_token(
    app: FastAPI, client: TestClient, browser: TestClient, db: Session, world: World
) -> None:
    secret = org_token(db, "acme")
    row = db.scalars(select(OrgToken)).one()
    row.scopes = frozenset({"org:ci", "project:releases"})  # as an older server minted it
    record_change(db, Change(Topic.CREDENTIAL, row.token_hash))
    db.commit()
    app.state.runtime.confirm_changes()
    token = bearer(secret)
    assert _release(client, token, "3.0.0") == 201
    assert _release(client, token, "gone") == 201
    assert client.delete(f"{ACME}/releases/gone/", headers=token).status_code == 204
    app.state.runtime.flush_scope_usage()
    _forget_deletes(db, f"org_token:{row.id}")

    csrf = login(browser, World.email("manager"))
    listing = browser.get(PAGE)
    assert "narrow to org:ci" in listing.text
    done = browser.post(NARROW, data={"subject": f"org_token:{row.id}", "scopes": ["org:ci"],
                                      "csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303, done.text
    db.rollback()  # end the read snapshot: see what was committed since
    db.expire_all()
    assert db.get(OrgToken, row.id).scopes == {"org:ci"}
    [event] = _narrow_events(db)
    assert event.detail.startswith(f"org_token={row.id} before=") and event.scopes == {"org:ci"}
    assert event.user_id == world.users["manager"]
    assert _release(client, token, "gone-2") == 201
    assert client.delete(f"{ACME}/releases/gone-2/", headers=token).status_code == 403


def test_narrowing_never_widens_and_needs_org_write(
    app: FastAPI, client: TestClient, browser: TestClient, db: Session, world: World
) -> None:
    integration_id, _ = _ci_integration(client, db)
    subject = f"integration:{integration_id}"
    csrf = login(browser, World.email("owner"))
    wider = browser.post(NARROW, data={"subject": subject, "scopes": ["org:admin"],
                                       "csrf_token": csrf})
    assert wider.status_code == 403 and "never widens" in wider.text
    unknown = browser.post(NARROW, data={"subject": subject, "scopes": ["nope:x"],
                                         "csrf_token": csrf})
    assert unknown.status_code == 400 and "nope:x" not in unknown.text
    person = browser.post(NARROW, data={"subject": "user_token:1:abcdef", "scopes": ["org:ci"],
                                        "csrf_token": csrf})
    assert person.status_code == 400
    nothing = browser.get(NARROW, params={"subject": subject})  # never used: no offer
    assert nothing.status_code == 404
    assert _scopes(db, integration_id) == set(CI_SCOPES) and not _narrow_events(db)

    member = TestClient(app, base_url=BASE_URL)
    member_csrf = login(member, World.email("admin"))  # org:integrations, not org:write
    assert member.get(PAGE).status_code == 403
    refused = member.post(NARROW, data={"subject": subject, "scopes": ["project:releases"],
                                        "csrf_token": member_csrf})
    assert refused.status_code == 403 and _scopes(db, integration_id) == set(CI_SCOPES)
    member.close()
    assert browser.get("/organizations/globex/scope-usage").status_code == 404
    anonymous = TestClient(app, base_url=BASE_URL)
    assert anonymous.get(PAGE, follow_redirects=False).status_code == 303  # to /login
    anonymous.close()
