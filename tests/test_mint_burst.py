"""A burst of mints after the key ring's reload interval: no 500s, no request-side reload.

Attack from the outside run: 100 concurrent mints right after the key ring's 30-second
reload interval gave 40 × 500 and a 62 s stall on SQLite (51 × 500 and 90 s on
PostgreSQL). The ring reloaded through a second pooled connection inside the request,
under a lock other requests waited on. Now a stale ring is reloaded by a background
thread while requests keep using the ring they have, and a request that cannot get a
connection or SQLite's write lock within its bound is a 503 with ``Retry-After``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

import spec
from scopegate.services.keys import KeyRing
from scopegate.web.app import create_app
from support.agent import AGENT_MINT_PATH
from support.database import statements
from support.http import bearer
from support.live_server import live_server
from support.load import burst
from support.settings import make_settings
from support.world import World, build_world_quick, user_token

BURST = 100
MEMBER = World.email("member")
RELOADER_THREAD = "scopegate-keyring"


@contextmanager
def signing_key_reads(app: FastAPI) -> Iterator[list[str]]:
    """Names of the threads that run a statement on ``signing_keys`` meanwhile."""
    threads: list[str] = []
    with statements(app.state.runtime.engine) as sent:
        yield threads
    threads.extend(thread for thread, sql in sent if "signing_keys" in sql)


def test_key_ring_reload_never_runs_in_the_requesting_thread(
    app: FastAPI, client: TestClient
) -> None:
    keys: KeyRing = app.state.runtime.keys  # loaded at start-up (``client`` started the app)
    before = keys.active().kid
    assert keys.settle(timeout=30)  # a reload already under way would hide this one
    with signing_key_reads(app) as threads:
        keys.mark_stale()
        assert keys.active().kid == before  # answered from memory, at once
        # An unknown kid waits for the background reload (bounded), never runs it itself.
        assert keys.public_key("no-such-kid") is None
        # That wait is bounded (2 s); on a loaded machine the reload may outlast it.
        assert keys.settle(timeout=30)
    assert threads, "the stale ring was reloaded"
    assert set(threads) == {f"{RELOADER_THREAD}_0"}


def test_mint_burst_after_the_key_reload_interval_has_no_server_errors(
    database_url: str,
) -> None:
    def make_app(base_url: str) -> FastAPI:
        return create_app(make_settings(database_url, base_url=base_url))

    with live_server(make_app) as server:
        with server.app.state.runtime.factory() as db:
            build_world_quick(db)
            person = bearer(user_token(db, MEMBER, spec.ROLE_SCOPES["member"]))
        keys: KeyRing = server.app.state.runtime.keys
        path = AGENT_MINT_PATH.format(org="acme")
        with signing_key_reads(server.app) as threads:
            keys.mark_stale()  # as if the 30-second reload interval had just passed

            def mint(client: httpx.Client, n: int) -> httpx.Response:
                return client.post(path, json={"sessionId": f"burst-{n}"})

            result = burst(mint, BURST, BURST, base_url=server.base_url, headers=person)
            keys.public_key("no-such-kid")  # start (at most) one more reload
            assert keys.settle(timeout=30)
    statuses = result.status_list  # 0 for a request that got no response at all
    assert all(status in (201, 503) for status in statuses), (sorted(set(statuses)),
                                                              result.errors[:3])
    assert all(r.headers.get("retry-after") for r in result.responses
               if r is not None and r.status_code == 503)
    assert statuses.count(201) > 0
    assert threads and all(name.startswith(RELOADER_THREAD) for name in threads), set(threads)


def test_a_write_that_cannot_get_the_sqlite_lock_is_503_with_retry_after(
    sqlite_url: str,
) -> None:
    """Overload degrades into a bounded wait and a 503, never a 500 or a stall."""
    app = create_app(make_settings(sqlite_url, sqlite_busy_timeout_seconds=0.2))
    holder = sqlite3.connect(make_url(sqlite_url).database or "", isolation_level=None)
    try:
        with app.state.runtime.factory() as db:
            build_world_quick(db)
            person = bearer(user_token(db, MEMBER, spec.ROLE_SCOPES["member"]))
        with TestClient(app, base_url="http://testserver") as client:
            path = AGENT_MINT_PATH.format(org="acme")
            assert client.post(path, json={"sessionId": "ok"}, headers=person).status_code == 201
            holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            blocked = client.post(path, json={"sessionId": "blocked"}, headers=person)
            holder.execute("ROLLBACK")
            assert blocked.status_code == 503
            assert blocked.headers["retry-after"] == "1"
            assert client.post(path, json={"sessionId": "again"}, headers=person
                               ).status_code == 201
    finally:
        holder.close()
        app.state.runtime.engine.dispose()
