"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL.

The helpers they use live in ``tests/support/`` (settings and services, databases, the
standard world, HTTP, agent tokens, live servers, Chromium); this file holds fixtures only.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from scopegate.services.oauth.clients import NewClient
from scopegate.settings import Settings, get_settings
from scopegate.store.counters import Counters, MemoryCounters, RedisCounters
from scopegate.store.db import make_engine
from scopegate.web.app import create_app
from support.browser import browser_page, launched_chromium
from support.database import prepare_engine, scratch_database, truncate_pg, worker_name
from support.http import login
from support.live_server import LiveServer, live_app
from support.oauth import register
from support.settings import (
    BASE_URL,
    OAUTH_BASE_URL,
    PG_URL,
    REDIS_URL,
    SECRET,
    make_settings,
    require_service,
)
from support.world import World, build_world

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test copies it instead of migrating again."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    prepare_engine(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A migrated PostgreSQL database for this test worker."""
    admin_url = require_service(PG_URL, "PostgreSQL", "SCOPEGATE_TEST_DATABASE_URL")
    name = f"{make_url(admin_url).database or 'test'}_sg_{worker_name()}"
    with scratch_database(admin_url, name) as url:
        engine = make_engine(url)
        prepare_engine(engine)
        engine.dispose()
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean, migrated database: SQLite and PostgreSQL in turn."""
    if request.param == "sqlite":
        path = tmp_path / "scopegate.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    truncate_pg(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only, for tests whose subject is not storage."""
    path = tmp_path / "scopegate.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def server(sqlite_url: str) -> Iterator[LiveServer]:
    """scopegate served by uvicorn on loopback, on a fresh SQLite database."""
    with live_app(sqlite_url) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium through Playwright, one per test module (see support/browser.py)."""
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context and page for one test."""
    with browser_page(browser) as opened:
        yield opened


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    runtime = application.state.runtime
    runtime.start()  # what the lifespan does; a started client's lifespan finds it done
    yield application
    runtime.stop()
    runtime.engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE_URL) as test_client:
        yield test_client


@pytest.fixture
def db(app: FastAPI) -> Iterator[Session]:
    """A session on the app's database, committed by the test when it writes."""
    session = app.state.runtime.factory()
    yield session
    session.close()


@pytest.fixture
def world(db: Session) -> World:
    return build_world(db)


# -- the OAuth server in process, on a loopback base URL (Authlib refuses plain http
# anywhere else) ----------------------------------------------------------------------

@pytest.fixture
def oauth_app(database_url: str) -> Iterator[FastAPI]:
    application = create_app(make_settings(database_url, base_url=OAUTH_BASE_URL))
    application.state.runtime.start()
    yield application
    application.state.runtime.stop()


@pytest.fixture
def web(oauth_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(oauth_app, base_url=OAUTH_BASE_URL) as client:
        yield client


@pytest.fixture
def session(oauth_app: FastAPI) -> Iterator[Session]:
    with oauth_app.state.runtime.factory() as db:
        yield db


@pytest.fixture
def people(session: Session) -> World:
    return build_world(session)


@pytest.fixture
def confidential(session: Session, people: World) -> NewClient:
    """A confidential client registered by acme's owner."""
    return register(session, people.users["owner"])


@pytest.fixture
def signed_in(web: TestClient, people: World) -> TestClient:
    """``web`` with acme's member signed in."""
    login(web, World.email("member"))
    return web


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[None]:
    """Point the CLI (which reads ``SCOPEGATE_*`` through a cached ``get_settings``) at
    the test database and server secret."""
    monkeypatch.setenv("SCOPEGATE_DATABASE_URL", database_url)
    monkeypatch.setenv("SCOPEGATE_SECRET_KEY", SECRET)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(params=["memory", "redis"])
def counters(request: pytest.FixtureRequest) -> Iterator[Counters]:
    """Both counter stores (login throttling, rate limits); Redis under a prefix unique to
    the test, its keys deleted afterwards."""
    if request.param == "memory":
        yield MemoryCounters()
        return
    import redis

    url = require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")
    prefix = f"scopegate-test:{uuid.uuid4().hex}:"
    store = RedisCounters(url, prefix=prefix)
    yield store
    store.close()
    raw = redis.Redis.from_url(url)
    for name in raw.scan_iter(prefix + "*"):
        raw.delete(name)
    raw.close()
