"""A token's write scopes end with the grant that gave them.

Attacks from the outside run: a token minted while a write grant was live kept writing
after the grant expired; lowering an organization's ``maxGrantSeconds`` left existing
grants (and their tokens) as long as before; and on PostgreSQL a mint racing
``DELETE …/agent/sessions/{id}/`` could return a token that kept writing after the
revocation had returned. Verification now honours a token's write scopes only while its
session's grant holds them (``services/grant_cache.py``).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

import spec
from scopegate.core.changes import Change, Topic, grant_key
from scopegate.store.models import WriteGrant
from scopegate.store.outbox import record_change
from scopegate.store.types import utcnow
from scopegate.web.app import create_app
from scopegate.web.cookies import CSRF_HEADER
from support.agent import (
    AGENT_MINT_PATH,
    agent_claims,
    agent_token_for,
    approve_via_api,
    sign_agent_token,
)
from support.http import bearer, login
from support.live_server import live_server
from support.settings import BASE_URL, make_settings
from support.world import World, build_world_quick, user_token

MEMBER = World.email("member")
OWNER = World.email("owner")
RACE_TRIES = 25
MINTS_PER_TRY = 4


def resolve(client: TestClient | httpx.Client, token: str, issue_id: int) -> int:
    return client.put(f"/api/0/organizations/acme/issues/{issue_id}/",
                      json={"status": "resolved"}, headers=bearer(token)).status_code


def reads(client: TestClient, token: str) -> int:
    return client.get("/api/0/organizations/acme/issues/", headers=bearer(token)).status_code


def writer_token(client: TestClient, db: Session, session: str) -> str:
    """Approve event:write for ``session`` in the member's browser, then mint with it."""
    csrf = login(client, MEMBER)
    assert approve_via_api(client, csrf, ["event:write"], session=session).status_code == 201
    person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    token = agent_token_for(client, bearer(person), sessionId=session)
    return token


def test_agent_token_write_scopes_end_when_the_grant_expires(
    database_url: str,
) -> None:
    # The grant's end is checked at each use, against the cached grant's expiry.
    app = create_app(make_settings(database_url))
    try:
        with app.state.runtime.factory() as db, TestClient(app, base_url=BASE_URL) as client:
            world = build_world_quick(db)
            token = writer_token(client, db, "end-1")
            assert resolve(client, token, world.issue_ids[0]) == 200

            # The grant's time passes (edited in the database, and announced as every
            # change to a cached row is); the token's exp has not.
            db.execute(update(WriteGrant).where(WriteGrant.session_id == "end-1")
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
            record_change(db, Change(Topic.GRANT, grant_key(world.orgs["acme"],
                                                            world.users["member"], "end-1")))
            db.commit()

            assert resolve(client, token, world.issue_ids[1]) == 403
            assert reads(client, token) == 200  # reads never depended on the grant
    finally:
        app.state.runtime.engine.dispose()


def test_lowering_max_grant_seconds_caps_existing_grants_and_their_tokens(
    client: TestClient, db: Session, world: World
) -> None:
    token = writer_token(client, db, "end-2")
    assert resolve(client, token, world.issue_ids[0]) == 200
    # The grant was approved two hours ago for 24 hours (4 h is the default choice).
    db.execute(update(WriteGrant).where(WriteGrant.session_id == "end-2")
               .values(updated_at=utcnow() - timedelta(hours=2),
                       expires_at=utcnow() + timedelta(hours=22)))
    db.commit()
    assert resolve(client, token, world.issue_ids[1]) == 200

    owner = user_token(db, OWNER, spec.ROLE_SCOPES["owner"])
    lowered = client.put("/api/0/organizations/acme/", json={"maxGrantSeconds": 3600},
                         headers=bearer(owner))
    assert lowered.status_code == 200, lowered.text

    db.expire_all()
    grant = db.scalar(select(WriteGrant).where(WriteGrant.session_id == "end-2"))
    db.commit()
    assert grant is not None
    assert grant.expires_at <= grant.updated_at + timedelta(seconds=3600)
    assert resolve(client, token, world.issue_ids[2]) == 403


def test_raising_max_grant_seconds_leaves_grants_alone(
    client: TestClient, db: Session, world: World
) -> None:
    """The cap only ever shortens (positive control for the test above)."""
    token = writer_token(client, db, "end-3")
    db.expire_all()
    before = db.scalar(select(WriteGrant.expires_at).where(WriteGrant.session_id == "end-3"))
    db.commit()
    owner = user_token(db, OWNER, spec.ROLE_SCOPES["owner"])
    raised = client.put("/api/0/organizations/acme/", json={"maxGrantSeconds": 7 * 24 * 3600},
                        headers=bearer(owner))
    assert raised.status_code == 200
    db.expire_all()
    after = db.scalar(select(WriteGrant.expires_at).where(WriteGrant.session_id == "end-3"))
    db.commit()
    assert after == before
    assert resolve(client, token, world.issue_ids[0]) == 200


def test_token_of_a_mint_that_raced_the_revocation_cannot_write(
    client: TestClient, app: FastAPI, db: Session, world: World
) -> None:
    """The race's worst outcome, made exact: a mint read the grant before the revocation
    committed but stamped its token a second after ``revoked_at``, so the deny list does
    not cover it. The grant is gone, so its write scope is not honoured."""
    csrf = login(client, MEMBER)
    assert approve_via_api(client, csrf, ["event:write"], session="late").status_code == 201
    revoked = client.delete("/api/0/organizations/acme/agent/sessions/late/",
                            headers={CSRF_HEADER: csrf})
    assert revoked.status_code == 204
    later = int(time.time()) + 2  # within the verifier's clock leeway
    raced = sign_agent_token(app, agent_claims(
        app, world.users["member"], world.orgs["acme"], sid="late",
        scopes=["event:read", "event:write"], iat=later, exp=later + 300))
    assert resolve(client, raced, world.issue_ids[0]) == 403
    assert reads(client, raced) == 200  # it is a valid token: only the write is gone

    # Positive control: the same forged-late token for a session whose grant is live writes.
    assert approve_via_api(client, csrf, ["event:write"], session="alive").status_code == 201
    alive = sign_agent_token(app, agent_claims(
        app, world.users["member"], world.orgs["acme"], sid="alive",
        scopes=["event:read", "event:write"], iat=later, exp=later + 300))
    assert resolve(client, alive, world.issue_ids[0]) == 200


def test_revoke_races_mint_no_token_writes_after_revocation_returns(database_url: str) -> None:
    """Many tries of: approve a session, then mint several tokens for it while the
    session is revoked. After the revocation has returned, no token of that session
    may write, whatever raced it (the tries run over real HTTP, many at once)."""

    def make_app(base_url: str):
        return create_app(make_settings(database_url, base_url=base_url))

    with live_server(make_app) as server:
        factory = server.app.state.runtime.factory
        with factory() as db:
            world = build_world_quick(db)
            person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
        mint_path = AGENT_MINT_PATH.format(org="acme")
        with httpx.Client(base_url=server.base_url, timeout=30) as browser:
            csrf = login(browser, MEMBER)  # type: ignore[arg-type]
            minted_before_revoke_wrote = 0
            late_writes = []
            for attempt in range(RACE_TRIES):
                sid = f"race-{attempt}"
                approved = browser.post("/api/0/organizations/acme/agent/approve/",
                                        json={"sessionId": sid, "scopes": ["event:write"]},
                                        headers={CSRF_HEADER: csrf})
                assert approved.status_code == 201, approved.text
                tokens: list[str] = []
                start = threading.Barrier(MINTS_PER_TRY + 1)

                def mint(sid: str = sid, start: threading.Barrier = start,
                         tokens: list[str] = tokens) -> None:
                    with httpx.Client(base_url=server.base_url, timeout=30) as agent:
                        start.wait()
                        response = agent.post(mint_path, json={"sessionId": sid},
                                              headers=bearer(person))
                        assert response.status_code == 201, response.text
                        tokens.append(response.json()["token"])

                threads = [threading.Thread(target=mint) for _ in range(MINTS_PER_TRY)]
                for thread in threads:
                    thread.start()
                start.wait()
                revoked = browser.delete(f"/api/0/organizations/acme/agent/sessions/{sid}/",
                                         headers={CSRF_HEADER: csrf})
                assert revoked.status_code == 204
                for thread in threads:
                    thread.join()
                assert len(tokens) == MINTS_PER_TRY
                with httpx.Client(base_url=server.base_url, timeout=30) as agent:
                    for token in tokens:
                        status = resolve(agent, token, world.issue_ids[attempt % 3])
                        if status == 200:
                            late_writes.append(sid)
                        assert status in (401, 403)
            # Positive control: a token of a live grant does write over the same path.
            with httpx.Client(base_url=server.base_url, timeout=30) as agent:
                approved = browser.post("/api/0/organizations/acme/agent/approve/",
                                        json={"sessionId": "race-live",
                                              "scopes": ["event:write"]},
                                        headers={CSRF_HEADER: csrf})
                assert approved.status_code == 201
                live = agent.post(mint_path, json={"sessionId": "race-live"},
                                  headers=bearer(person)).json()["token"]
                minted_before_revoke_wrote = resolve(agent, live, world.issue_ids[0])
    assert late_writes == []
    assert minted_before_revoke_wrote == 200
