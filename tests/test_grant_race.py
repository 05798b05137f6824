"""Concurrent approvals of one agent session end as one write-grant row holding the union.

A real uvicorn server on loopback (``live_server``) and one logged-in browser session
(cookie + CSRF) fire many approvals at once through the HTTP API, each with a different
subset of the owner's scopes. The design: one row per (org, user, session) by a unique
constraint, merges under a row lock (``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
SQLite), and no outcome is a 5xx.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

import spec
from scopegate.store.models import AuditEvent, WriteGrant
from support.live_server import LiveServer, live_app
from support.settings import PASSWORD
from support.world import World, build_world_quick

OWNER_SCOPES = sorted(spec.ROLE_SCOPES["owner"])
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
_SCOPE_CODE = re.compile(r'<code class="scope">([a-z:]+)</code>')


@pytest.fixture
def server(database_url: str) -> Iterator[LiveServer]:
    with live_app(database_url) as running:
        with running.app.state.runtime.factory() as session:
            build_world_quick(session)
        yield running


def browser_login(client: httpx.Client, email: str) -> str:
    """Log in through the form; return the session's CSRF token."""
    page = client.get("/login")
    form = _CSRF_INPUT.search(page.text)
    assert form, "login form has no CSRF field"
    done = client.post("/login", data={"email": email, "password": PASSWORD,
                                       "csrf_token": form.group(1)})
    assert done.status_code == 303, done.text
    account = client.get("/account")
    match = _CSRF_INPUT.search(account.text)
    assert match, "account page has no CSRF field"
    return match.group(1)


def race(server: LiveServer, count: int, session_id: str, via: str = "api") -> None:
    """``count`` approvals at once, through the JSON API or the approval page's form."""
    rng = random.Random(count)
    subsets = [sorted(rng.sample(OWNER_SCOPES, rng.randint(1, 4))) for _ in range(count)]
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    with httpx.Client(base_url=server.base_url, limits=limits, timeout=60) as client:
        csrf = browser_login(client, World.email("owner"))
        barrier = threading.Barrier(count)
        results: list[tuple[int, list[str], dict | str]] = [(0, [], "")] * count

        def approve(index: int) -> None:
            barrier.wait(timeout=30)
            try:
                if via == "api":
                    response = client.post(
                        "/api/0/organizations/acme/agent/approve/",
                        json={"sessionId": session_id, "scopes": subsets[index]},
                        headers={"X-CSRF-Token": csrf},
                    )
                    body = response.json() if response.status_code < 500 else response.text
                else:
                    response = client.post(
                        "/organizations/acme/agent/approve",
                        data={"csrf_token": csrf, "session": session_id,
                              "scopes": subsets[index], "decision": "approve"},
                    )
                    body = {"scopes": _SCOPE_CODE.findall(response.text),
                            "droppedScopes": []} if response.status_code < 500 else ""
                results[index] = (response.status_code, subsets[index], body)
            except Exception as error:  # a dropped connection counts as a failure too
                results[index] = (-1, subsets[index], repr(error))

        threads = [threading.Thread(target=approve, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads), "approvals hung"

    statuses = sorted(status for status, _, _ in results)
    assert all(status == 201 for status in statuses), statuses
    for _, subset, body in results:
        assert isinstance(body, dict)
        assert set(subset) <= set(body["scopes"]), "a response lost its own approval"
        assert body["droppedScopes"] == []

    union = frozenset().union(*map(frozenset, subsets))
    with server.app.state.runtime.factory() as db:
        rows = list(db.scalars(select(WriteGrant).where(WriteGrant.session_id == session_id)))
        assert len(rows) == 1, f"{len(rows)} grant rows for one session"
        assert rows[0].scopes == union, (union - rows[0].scopes, rows[0].scopes - union)
        approvals = db.scalars(select(AuditEvent).where(
            AuditEvent.event == "agent.approve", AuditEvent.session_id == session_id)).all()
        assert len(approvals) == count, "every approval is audited exactly once"


@pytest.mark.postgres
@pytest.mark.parametrize("via", ["api", "form"])
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_fifty_simultaneous_approvals_merge_into_one_row_on_postgresql(
    server: LiveServer, via: str
) -> None:
    race(server, 50, f"race-pg-{via}", via)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_simultaneous_approvals_merge_into_one_row_on_sqlite(server: LiveServer) -> None:
    race(server, 20, "race-sqlite")
