"""The request path: one thread hop for a warm request, no write on a read, units of work
that cannot be forgotten, last-used times written in the background.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, event, literal, select
from sqlalchemy.orm import Session
from starlette.requests import Request

from scopegate.core.changes import Change, Topic
from scopegate.runtime.process import Runtime
from scopegate.settings import Settings
from scopegate.store.models import UserToken
from scopegate.web.app import create_app
from scopegate.web.transactions import TransactionalRoute, get_db, writes_nothing
from support.database import statements
from support.hops import thread_hops
from support.http import bearer
from support.settings import BASE_URL
from support.world import World, user_token

ISSUES = "/api/0/organizations/acme/issues/"
RELEASE = "/api/0/organizations/acme/releases/0.0.0-none/"
MISSING_ISSUE = 2**31 - 1
WRITES = ("INSERT", "UPDATE", "DELETE")


BACKGROUND_THREADS = ("scopegate-upkeep", "scopegate-keyring", "scopegate-bus")


def test_a_read_never_hops_warm_or_after_a_miss(
    app: FastAPI, client: TestClient, db: Session, world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GET issues runs Core statements on a ``Connection``: on the loop on SQLite
    (embedded, no network to wait on) and through the loop's asyncio connections on
    PostgreSQL. A miss adds the gate's load, on the loop as well. A Session read (GET
    releases/{version}/) runs on the loop too: a worker thread is for writes."""
    runtime = app.state.runtime
    on_postgresql = not runtime.reads_inline
    assert (runtime.loop_reader is not None) == on_postgresql  # the lifespan opened it
    token = user_token(db, "member@acme.test", {"event:read", "project:read"})
    assert client.get(ISSUES, headers=bearer(token)).status_code == 200  # caches warm
    with thread_hops(monkeypatch) as hops:
        assert client.get(ISSUES, headers=bearer(token)).status_code == 200
    assert hops == [], hops

    runtime.feed.apply([Change(topic) for topic in Topic])
    with thread_hops(monkeypatch) as hops:
        assert client.get(ISSUES, headers=bearer(token)).status_code == 200
    assert hops == [], hops  # the gate's load, on the loop too

    with thread_hops(monkeypatch) as hops:  # a Session read: on the loop too
        assert client.get(RELEASE, headers=bearer(token)).status_code == 404
    assert hops == [], hops


def test_a_write_always_runs_in_one_worker_thread(
    client: TestClient, db: Session, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = user_token(db, "member@acme.test", {"event:read", "event:write"})
    issue = f"{ISSUES}{world.issue_ids[0]}/"
    assert client.get(issue, headers=bearer(token)).status_code == 200  # caches warm
    with thread_hops(monkeypatch) as hops:
        changed = client.put(issue, json={"status": "resolved"}, headers=bearer(token))
    assert changed.status_code == 200, changed.text
    assert hops == ["run_unit"], hops


def test_a_read_request_writes_nothing_warm_or_cold(
    app: FastAPI, client: TestClient, db: Session, world: World
) -> None:
    token = user_token(db, "member@acme.test", {"event:read"})
    runtime = app.state.runtime
    # On PostgreSQL, reads and the gate's misses go through the loop's asyncio engine.
    engines = [runtime.engine, *([runtime.loop_reader.sync_engine] if runtime.loop_reader
                                 else [])]
    with statements(*engines) as everything:
        assert client.get(ISSUES, headers=bearer(token)).status_code == 200  # cold
        assert client.get(ISSUES, headers=bearer(token)).status_code == 200  # warm
        assert client.get(ISSUES, headers=bearer("sgu_" + "x" * 43)).status_code == 401
    # What the requests sent, not the runtime's own background threads.
    sent = [sql for thread, sql in everything if not thread.startswith(BACKGROUND_THREADS)]
    assert sent, "the cold request read the database"
    assert not [s for s in sent if s.lstrip().upper().startswith(WRITES)], sent


@contextmanager
def sqlite_statements(runtime: Runtime) -> Iterator[list[str]]:
    """Every statement SQLite itself runs meanwhile on the runtime's connections (those
    checked out and the loop's own), those the driver and dialect send on their own
    (``BEGIN``, ``PRAGMA``) included."""
    ran: list[str] = []
    engine = runtime.engine

    def trace(dbapi_connection: sqlite3.Connection, *_: object) -> None:
        dbapi_connection.set_trace_callback(ran.append)

    def untrace(dbapi_connection: sqlite3.Connection, *_: object) -> None:
        dbapi_connection.set_trace_callback(None)

    held = runtime.loop_connection
    held_dbapi = held.connection.dbapi_connection if held is not None else None
    if held_dbapi is not None:
        trace(held_dbapi)
    event.listen(engine, "checkout", trace)
    event.listen(engine, "checkin", untrace, insert=True)
    try:
        yield ran
    finally:
        event.remove(engine, "checkout", trace)
        event.remove(engine, "checkin", untrace)
        if held_dbapi is not None:
            untrace(held_dbapi)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_warm_read_on_sqlite_runs_its_select_and_no_other_statement(
    app: FastAPI, client: TestClient, db: Session, world: World
) -> None:
    """No ``BEGIN``/``COMMIT`` around a read, and nothing when its connection goes back
    to the pool (asking SQLAlchemy for ``AUTOCOMMIT`` added a ``PRAGMA read_uncommitted``
    there: ``store.db.autocommit``)."""
    token = user_token(db, "member@acme.test", {"event:read"})
    assert client.get(ISSUES, headers=bearer(token)).status_code == 200  # caches warm
    with sqlite_statements(app.state.runtime) as ran:
        assert client.get(ISSUES, headers=bearer(token)).status_code == 200
    requests = [sql for sql in ran if "change_versions" not in sql]  # not the upkeep's poll
    assert len(requests) == 1 and requests[0].lstrip().startswith("SELECT issues."), ran


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_warm_sqlite_reads_use_the_loops_own_connection_and_give_it_back_at_the_end(
    settings: Settings, db: Session, world: World
) -> None:
    """Checked out once by the lifespan, not per request; a read that ends in a 404 leaves
    it usable; the end of the lifespan returns it to the pool."""
    app = create_app(settings)
    runtime = app.state.runtime
    token = user_token(db, "member@acme.test", {"event:read"})
    checkouts: list[object] = []
    event.listen(runtime.engine, "checkout", lambda *_: checkouts.append(1))
    with TestClient(app, base_url=BASE_URL) as client:
        held = runtime.loop_connection
        assert held is not None and not held.closed
        assert client.get(ISSUES, headers=bearer(token)).status_code == 200  # caches warm
        checkouts.clear()
        assert client.get(f"{ISSUES}{MISSING_ISSUE}/", headers=bearer(token)).status_code == 404
        assert client.get(ISSUES, headers=bearer(token)).status_code == 200
        assert checkouts == [] and runtime.loop_connection is held
    assert runtime.loop_connection is None and held.closed
    assert runtime.engine.pool.checkedout() == 0
    runtime.engine.dispose()


def test_a_second_lifespan_on_one_runtime_leaves_the_loops_readers_to_the_first(
    app: FastAPI, client: TestClient, db: Session, world: World
) -> None:
    """The loop's connection and the loop reader belong to the loop that opened them: a
    second app lifespan in another thread's loop reads through the pool and, ending,
    closes neither."""
    runtime = app.state.runtime
    token = user_token(db, "member@acme.test", {"event:read"})
    assert client.get(ISSUES, headers=bearer(token)).status_code == 200
    first = (runtime.loop_reader, runtime.loop_connection)
    assert first != (None, None)
    with TestClient(app, base_url=BASE_URL) as second:
        assert second.get(ISSUES, headers=bearer(token)).status_code == 200
    assert (runtime.loop_reader, runtime.loop_connection) == first
    assert client.get(ISSUES, headers=bearer(token)).status_code == 200


def test_last_used_is_written_in_the_background_at_most_once_a_minute(
    app: FastAPI, client: TestClient, db: Session, world: World
) -> None:
    runtime = app.state.runtime
    token = user_token(db, "member@acme.test", {"event:read"})
    row = db.scalar(select(UserToken).where(UserToken.user_id == world.users["member"]))
    assert row is not None and row.last_used_at is None
    runtime.last_used.flush(runtime.factory)  # whatever was noted before
    assert client.get(ISSUES, headers=bearer(token)).status_code == 200
    assert runtime.last_used.flush(runtime.factory) == 1
    db.rollback()  # end the test session's read snapshot
    assert db.get(UserToken, row.id).last_used_at is not None
    assert client.get(ISSUES, headers=bearer(token)).status_code == 200
    assert runtime.last_used.flush(runtime.factory) == 0  # within the minute: not again


def test_a_write_route_without_a_unit_of_work_fails_when_the_app_is_built() -> None:
    router = APIRouter(route_class=TransactionalRoute)
    with pytest.raises(TypeError, match="must declare its unit of work"):
        @router.post("/forgot")
        def forgot() -> None:
            return None


def test_an_async_endpoint_cannot_take_the_sync_unit_of_work() -> None:
    router = APIRouter(route_class=TransactionalRoute)
    with pytest.raises(TypeError, match="cannot use get_db"):
        @router.get("/mixed")
        async def mixed(db: Session = Depends(get_db)) -> None:
            return None


def test_a_write_route_marked_as_touching_no_database_is_accepted() -> None:
    router = APIRouter(route_class=TransactionalRoute)

    @router.post("/echo")
    @writes_nothing
    def echo() -> dict[str, str]:
        return {"ok": "yes"}

    app = FastAPI()
    app.include_router(router)
    assert TestClient(app).post("/echo").json() == {"ok": "yes"}


def test_a_write_route_cannot_take_a_bare_connection() -> None:
    """A write's changes are announced after its Session commits; a Connection would
    skip that, so asking for one on a write route fails when the app is built."""
    router = APIRouter(route_class=TransactionalRoute)
    with pytest.raises(TypeError, match="Connection is for reads"):
        @router.post("/sneaky")
        def sneaky(db: Connection = Depends(get_db)) -> None:
            return None


def test_a_read_route_gets_the_unit_it_declares_and_fastapi_never_solves_get_db(
    app: FastAPI,
) -> None:
    """``db: Connection`` gives an autocommit connection, ``db: Session`` a session;
    either way the route passes it itself (``get_db`` is only a marker, and a
    ``Request`` parameter of the endpoint's own is left as the endpoint declared it)."""
    router = APIRouter(route_class=TransactionalRoute)

    runtime = app.state.runtime

    @router.get("/core")
    def core(db: Connection = Depends(get_db)) -> dict[str, object]:
        return {"kind": type(db).__name__, "one": db.execute(select(literal(1))).scalar(),
                "autocommit": db.engine is runtime.reader}

    @router.get("/orm")
    def orm(request: Request, db: Session = Depends(get_db)) -> dict[str, object]:
        return {"kind": type(db).__name__, "path": request.url.path}

    probe = FastAPI()
    probe.state.runtime = runtime
    probe.include_router(router)
    with TestClient(probe) as client:  # were get_db called, it would raise: a 500
        assert client.get("/core").json() == {"kind": "Connection", "one": 1,
                                              "autocommit": True}
        assert client.get("/orm").json() == {"kind": "Session", "path": "/orm"}
    assert "unit_of_work_request" not in str(probe.openapi())
