"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``SCOPEGATE_TEST_DATABASE_URL`` (``.ci/run`` exports it) and Redis
from ``SCOPEGATE_TEST_REDIS_URL``. Without them a test skips with the reason, unless
``CI`` is set: under CI a missing service is a failure.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import jwt
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from scopegate.core.roles import Role
from scopegate.services import credentials, directory, issues
from scopegate.services.keys import KeyRing
from scopegate.settings import Settings
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.migrate import upgrade
from scopegate.store.models import Base, User
from scopegate.web.app import create_app
from scopegate.web.cookies import CSRF_HEADER

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from live_server import LiveServer

PG_URL = os.environ.get("SCOPEGATE_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("SCOPEGATE_TEST_REDIS_URL")
IN_CI = bool(os.environ.get("CI"))
PASSWORD = "correct horse battery"
SECRET = "test-secret-key-not-for-production-0123456789"
BASE_URL = "http://testserver"


def require_service(url: str | None, name: str, variable: str) -> str:
    """The service URL, or skip (outside CI) / fail (under CI) with the reason."""
    if url:
        return url
    message = f"{name} not configured: set {variable}"
    if IN_CI:
        pytest.fail(message + " (CI must run every storage test on PostgreSQL and Redis)")
    pytest.skip(message)


def _worker() -> str:
    """A name unique to this test process: concurrent runs never share a database."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))[:8]
    return f"{run}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


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
    base = make_url(require_service(PG_URL, "PostgreSQL", "SCOPEGATE_TEST_DATABASE_URL"))
    name = f"{base.database or 'test'}_sg_{_worker()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    prepare_engine(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def prepare_engine(engine: Engine) -> None:
    """What ``scopegate migrate`` does: the schema, then the first signing key."""
    upgrade(engine)
    KeyRing(make_sessionmaker(engine), SECRET).ensure_active()


def _truncate_pg(url: str) -> None:
    """Empty every table but the change counters (which migrations seed), then give the
    database its first signing key again."""
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables
                       if t.name != "change_versions")
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    KeyRing(make_sessionmaker(engine), SECRET).ensure_active()
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean, migrated database: SQLite and PostgreSQL in turn."""
    if request.param == "sqlite":
        path = tmp_path / "scopegate.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    _truncate_pg(url)
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
    from live_server import live_app

    with live_app(sqlite_url) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium through Playwright, one per test module (see live_server.py)."""
    from live_server import launched_chromium

    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context and page for one test."""
    from live_server import browser_page

    with browser_page(browser) as opened:
        yield opened


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url, "secret_key": SECRET, "base_url": BASE_URL, **overrides
    }
    return Settings(**values)


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


@dataclass
class World:
    """Two organizations: ``acme`` with a user per role, ``globex`` with its own owner.

    ``acme`` has projects ``web`` and ``api`` with issues; ``globex`` has ``backend``.
    """

    users: dict[str, int] = field(default_factory=dict)
    orgs: dict[str, int] = field(default_factory=dict)
    issue_ids: list[int] = field(default_factory=list)
    globex_issue_id: int = 0

    @staticmethod
    def email(role: Role | str) -> str:
        return f"{Role(role).value}@acme.test"


def build_world(session: Session) -> World:
    """The standard world; see ``build_world_quick`` (one precomputed Argon2 hash)."""
    return build_world_quick(session)


@pytest.fixture
def world(db: Session) -> World:
    return build_world(db)


def user_token(
    session: Session, email: str, scopes: set[str] | frozenset[str], **kw: object
) -> str:
    minted = credentials.create_user_token(
        session, directory.get_user_by_email(session, email), frozenset(scopes), **kw
    )
    session.commit()
    return minted.token


def org_token(session: Session, org_slug: str) -> str:
    minted = credentials.create_org_token(
        session, directory.get_org(session, org_slug), None, BASE_URL
    )
    session.commit()
    return minted.token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Log ``client`` in through the login form; return the session's CSRF token."""
    page = client.get("/login")
    form_csrf = _CSRF_INPUT.search(page.text)
    assert form_csrf, "login form has no CSRF field"
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": form_csrf.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    account = client.get("/account")
    match = _CSRF_INPUT.search(account.text)
    assert match, "account page has no CSRF field"
    return match.group(1)


_CHALLENGE_PARAM = r'[a-z_]+="[^"\\]*"'
_CHALLENGE = re.compile(rf"Bearer {_CHALLENGE_PARAM}(?:, {_CHALLENGE_PARAM})*")


def parse_challenge(header: str | None) -> dict[str, str]:
    """The parameters of an RFC 6750 ``Bearer`` challenge; fails on anything malformed."""
    assert header is not None, "no WWW-Authenticate header"
    assert _CHALLENGE.fullmatch(header), f"not an RFC 6750 challenge: {header!r}"
    return dict(re.findall(r'([a-z_]+)="([^"\\]*)"', header))


# --- Agent capability tokens (helpers for tests/test_agent_*.py and test_grant_race.py) ---

AGENT_MINT_PATH = "/api/0/organizations/{org}/agent/token/"
AGENT_APPROVE_PATH = "/api/0/organizations/{org}/agent/approve/"


@functools.cache
def password_hash() -> str:
    """A real Argon2id hash of ``PASSWORD`` at low cost, computed once per process.

    The production hasher costs about 0.3 s a hash (and as much per login) here;
    ``build_world_quick`` stores this one hash for every user instead. Logging in still
    verifies it with Argon2 for real: the parameters travel inside the hash string.
    """
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)


def build_world_quick(session: Session) -> World:
    """``build_world`` with the same users, organizations, projects and issues, whose
    users share one precomputed password hash (see ``password_hash``)."""
    world = World()
    users = {}
    for role in Role:
        user = User(email=World.email(role), name=role.value, password_hash=password_hash())
        session.add(user)
        users[role] = user
    outsider = User(email="owner@globex.test", name="globex", password_hash=password_hash())
    session.add(outsider)
    session.flush()
    acme = directory.create_org(session, "acme", users[Role.OWNER], name="Acme")
    for role, user in users.items():
        if role is not Role.OWNER:
            directory.add_member(session, acme, user, role)
    globex = directory.create_org(session, "globex", outsider, name="Globex")
    web = directory.create_project(session, acme, "web")
    directory.create_project(session, acme, "api")
    backend = directory.create_project(session, globex, "backend")
    world.issue_ids = [issues.create_issue(session, web, f"Issue {n}").id for n in range(3)]
    world.globex_issue_id = issues.create_issue(session, backend, "Globex issue").id
    world.users = {role.value: user.id for role, user in users.items()}
    world.users["outsider"] = outsider.id
    world.orgs = {"acme": acme.id, "globex": globex.id}
    session.commit()
    return world


def mint_agent(
    client: TestClient, headers: dict[str, str], org: str = "acme", **body: object
) -> Response:
    """``POST`` the mint endpoint; ``body`` is the JSON (``sessionId`` defaults to "s1")."""
    body.setdefault("sessionId", "s1")
    return client.post(AGENT_MINT_PATH.format(org=org), json=body, headers=headers)


def agent_token_for(
    client: TestClient, headers: dict[str, str], org: str = "acme", **body: object
) -> str:
    """Mint and return just the token, failing on anything but 201."""
    response = mint_agent(client, headers, org, **body)
    assert response.status_code == 201, response.text
    return response.json()["token"]


def approve_via_api(
    client: TestClient, csrf: str, scopes: list[str], org: str = "acme",
    session: str = "s1", **body: object,
) -> Response:
    """Approve from the logged-in browser session of ``client`` (``X-CSRF-Token``)."""
    return client.post(
        AGENT_APPROVE_PATH.format(org=org),
        json={"sessionId": session, "scopes": scopes, **body},
        headers={CSRF_HEADER: csrf},
    )


def agent_claims(app: FastAPI, user_id: int, org_id: int, **overrides: object) -> dict:
    """Claims of a valid agent token for ``app`` (override or drop with ``None``)."""
    settings = app.state.runtime.settings
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": settings.issuer,
        "aud": f"{settings.base_url}/api/0/",
        "sub": str(user_id),
        "org": org_id,
        "sid": "s1",
        "scopes": ["event:read", "org:read"],
        "act": {"sub": "test-agent"},
        "par": "user_token:0",
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(16),
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_agent_token(
    app: FastAPI, claims: dict, *, headers: dict[str, object] | None = None,
    key: object = None, algorithm: str = "EdDSA",
) -> str:
    """``sga_`` + a JWS of ``claims`` signed with the app's active key (or ``key``).

    EdDSA tokens are assembled by hand (RFC 7515 compact form, Ed25519 over
    ``header.payload``), so any header or claim value can be signed, however wrong;
    other algorithms go through PyJWT. A header value of ``None`` drops that parameter.
    """
    active = app.state.runtime.keys.active()
    header: dict[str, object] = {"alg": algorithm, "kid": active.kid, "typ": "sg-agent+jwt"}
    header.update(headers or {})
    header = {name: value for name, value in header.items() if value is not None}
    signer = active.key if key is None else key
    if algorithm != "EdDSA":
        return "sga_" + jwt.encode(claims, signer, algorithm=algorithm, headers=header)
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = signer.sign(signing_input.encode())  # type: ignore[attr-defined]
    return f"sga_{signing_input}.{_b64url(signature)}"
