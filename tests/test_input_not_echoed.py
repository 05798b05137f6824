"""Errors name the field and the rule, never the attacker's text.

Attacks from the outside run: unknown scope strings came back verbatim in 400 bodies,
and attacker-chosen text from an approval link was shown in the approval page's problem
box. A payload here is markup plus a marker; none of it may come back.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import spec
from scopegate.store.models import UserToken
from support.agent import approve_via_api, mint_agent
from support.http import bearer, login
from support.world import World, user_token

MARKER = "zq7marker"
PAYLOAD = f"<img src=x onerror=alert(1)>{MARKER}"
SCOPE_LIKE = f"{MARKER}:write"
MEMBER = World.email("member")


def assert_not_echoed(text: str) -> None:
    assert MARKER not in text
    assert "onerror" not in text


def test_unknown_scopes_are_refused_without_echoing_them_on_the_api(
    client: TestClient, db: Session, world: World
) -> None:
    owner = bearer(user_token(db, World.email("owner"), spec.ROLE_SCOPES["owner"]))
    for scope in (SCOPE_LIKE, PAYLOAD):
        created = client.post("/api/0/api-tokens/", headers=owner,
                              json={"scopes": ["org:read", scope]})
        assert created.status_code == 400
        assert "scopes" in created.json()["detail"]
        assert_not_echoed(created.text)

        minted = mint_agent(client, owner, requestedScopes=["event:read", scope])
        assert minted.status_code == 400
        assert "requestedScopes" in minted.text
        assert_not_echoed(minted.text)

    csrf = login(client, MEMBER)
    approved = approve_via_api(client, csrf, [SCOPE_LIKE])
    assert approved.status_code == 400
    assert "scopes" in approved.text
    assert_not_echoed(approved.text)
    db.commit()
    assert db.scalar(select(func.count()).select_from(UserToken)) == 1  # the owner's own


def test_attacker_text_in_an_approval_link_is_not_shown_on_the_page(
    client: TestClient, db: Session, world: World
) -> None:
    csrf = login(client, MEMBER)
    link = "/organizations/acme/agent/approve?" + urlencode(
        {"session": "s1", "scopes": f"event:write {PAYLOAD}"})
    page = client.get(link)
    assert page.status_code == 400
    assert "scope" in page.text
    assert_not_echoed(page.text)

    form = client.post("/organizations/acme/agent/approve", data={
        "csrf_token": csrf, "session": "s1", "decision": "approve",
        "scopes": ["event:write", PAYLOAD]})
    assert form.status_code == 400
    assert_not_echoed(form.text)

    account = client.post("/account/tokens",
                          data={"csrf_token": csrf, "scopes": ["event:read", PAYLOAD]})
    assert account.status_code == 400
    assert_not_echoed(account.text)


def test_a_valid_approval_link_renders(client: TestClient, db: Session, world: World) -> None:
    """Positive control: the page above is a 400 because of the payload alone."""
    login(client, MEMBER)
    page = client.get("/organizations/acme/agent/approve?" + urlencode(
        {"session": "s1", "scopes": "event:write"}))
    assert page.status_code == 200
    assert "event:write" in page.text
