"""``/healthz``, ``/readyz`` and ``/metrics``: liveness, readiness, and the metrics token.

Readiness is checked against the real thing each time: the test databases (SQLite and
PostgreSQL), the test Redis, a closed-port Redis and PostgreSQL, and a database stamped
one migration behind its code.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import text

from scopegate.settings import Settings
from scopegate.store.db import make_engine
from scopegate.store.migrate import alembic_config
from scopegate.web.app import create_app
from support.live_server import free_port
from support.settings import BASE_URL, REDIS_URL, make_settings, require_service

SECURITY_HEADERS = ("x-frame-options", "x-content-type-options", "content-security-policy",
                    "cache-control")


def _client(app: FastAPI) -> TestClient:
    """A client without the lifespan: readiness must answer without a started runtime."""
    return TestClient(app, base_url=BASE_URL)


def _readyz(settings: Settings) -> Response:
    """``GET /readyz`` of a fresh app on ``settings``, its engine disposed afterwards."""
    app = create_app(settings)
    try:
        return _client(app).get("/readyz")
    finally:
        app.state.runtime.engine.dispose()


@pytest.fixture
def redis_url() -> str:
    return require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")


def test_healthz_answers_ok_with_the_security_headers(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    for header in SECURITY_HEADERS:
        assert header in response.headers, header
    assert response.headers["x-request-id"]


def test_healthz_touches_no_dependency(tmp_path: Path) -> None:
    """Database and Redis both on closed ports: the process is alive all the same."""
    closed = free_port()
    app = create_app(make_settings(f"postgresql+psycopg://postgres@127.0.0.1:{closed}/x",
                                   redis_url=f"redis://127.0.0.1:{closed}/0"))
    assert _client(app).get("/healthz").json() == {"status": "ok"}


def test_readyz_is_ready_on_the_test_database_and_redis(database_url: str,
                                                        redis_url: str) -> None:
    response = _readyz(make_settings(database_url, redis_url=redis_url))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "migrations", "redis"}
    assert all(check["ok"] for check in body["checks"].values())
    for header in SECURITY_HEADERS:
        assert header in response.headers, header


def test_readyz_without_redis_configured_checks_only_the_database(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert set(response.json()["checks"]) == {"database", "migrations"}


def test_readyz_is_503_naming_redis_when_redis_is_out_of_reach(sqlite_url: str) -> None:
    response = _readyz(make_settings(sqlite_url, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["redis"]
    assert body["checks"]["database"]["ok"] is True
    assert "ConnectionError" in body["checks"]["redis"]["detail"]


def test_readyz_is_503_naming_the_database_when_it_is_out_of_reach() -> None:
    url = f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{free_port()}/scopegate"
    response = _readyz(make_settings(url))
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    body = response.json()
    assert body["failed"] == ["database", "migrations"]
    assert "hunter2" not in response.text  # the URL (and its password) is never echoed


@pytest.fixture
def one_migration_behind(tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A migrated SQLite copy whose stored revision says one migration back."""
    path = tmp_path / "behind.db"
    shutil.copy(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        config = alembic_config(engine)
        script = ScriptDirectory.from_config(config)
        head = script.get_revision(script.get_current_head())
        assert head is not None and isinstance(head.down_revision, str)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.stamp(config, head.down_revision, purge=True)
    finally:
        engine.dispose()
    yield f"sqlite:///{path}"


def test_readyz_is_503_when_migrations_are_not_at_head(one_migration_behind: str) -> None:
    response = _readyz(make_settings(one_migration_behind))
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["failed"] == ["migrations"]
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["migrations"]["detail"].startswith("behind:")
    assert "scopegate migrate" in body["checks"]["migrations"]["detail"]


def test_readyz_stays_ready_when_a_newer_version_migrated_the_database(
        tmp_path: Path, sqlite_template: Path) -> None:
    """A rolling upgrade: the database carries a revision this code does not ship.
    Old processes keep serving (migrations add before they remove) instead of all
    leaving the load balancer at once."""
    path = tmp_path / "ahead.db"
    shutil.copy(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeedcafe'"))
    engine.dispose()
    response = _readyz(make_settings(f"sqlite:///{path}"))
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["migrations"]["detail"].startswith("ahead: f00dfeedcafe")


def test_the_three_are_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/healthz", "/readyz", "/metrics"} & set(paths)


def test_metrics_is_open_by_default(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "scopegate_http_requests_total" in response.text


def test_metrics_token_when_set_is_required(sqlite_url: str) -> None:
    app = create_app(make_settings(sqlite_url, metrics_token="scrape-me-0123456789"))
    try:
        client = _client(app)
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-012345678"})
        assert wrong.status_code == 401
        assert "scrape-me" not in wrong.text
        right = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
        assert right.status_code == 200
        assert "scopegate_decisions_total" in right.text
        # The token guards /metrics only: the probes stay open.
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
    finally:
        app.state.runtime.engine.dispose()
