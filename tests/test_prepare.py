"""Preparing a database (``scopegate migrate``, ``serve`` start-up) is safe to race.

N processes preparing the same fresh database at once — what N servers or workers
starting together do — end with one migrated schema and exactly one active signing key;
the app factory itself writes nothing.
"""

from __future__ import annotations

import multiprocessing
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from scopegate.cli.main import app as cli
from scopegate.runtime.prepare import prepare
from scopegate.services.keys import SecretMismatch
from scopegate.settings import Settings, get_settings
from scopegate.store.db import make_engine
from scopegate.store.models import SigningKey
from scopegate.web.app import create_app
from support.database import scratch_database, worker_name
from support.settings import PG_URL, SECRET, require_service

RACERS = 4


def _prepare(url: str) -> None:
    prepare(Settings(database_url=url, secret_key=SECRET))


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (not migrated), SQLite and PostgreSQL in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    admin_url = require_service(PG_URL, "PostgreSQL", "SCOPEGATE_TEST_DATABASE_URL")
    name = f"{make_url(admin_url).database or 'test'}_prep_{worker_name()}"
    with scratch_database(admin_url, name) as url:
        yield url


def test_processes_preparing_at_once_leave_one_schema_and_one_signing_key(
    fresh_url: str,
) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(RACERS) as pool:
        pool.map(_prepare, [fresh_url] * RACERS)
    engine = make_engine(fresh_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(SigningKey)) == 1
            assert conn.scalar(select(func.count()).select_from(SigningKey)
                               .where(SigningKey.active)) == 1
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all()
        assert "change_versions" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_preparing_again_changes_nothing(fresh_url: str) -> None:
    _prepare(fresh_url)
    engine = make_engine(fresh_url)
    with engine.connect() as conn:
        first = conn.scalar(select(SigningKey.kid))
    _prepare(fresh_url)
    with engine.connect() as conn:
        assert conn.scalars(select(SigningKey.kid)).all() == [first]
    engine.dispose()


def test_the_app_factory_writes_nothing(tmp_path: Path) -> None:
    # An unprepared database stays empty when an app is built on it: migrations and the
    # first key belong to ``scopegate migrate`` / ``serve``, under the start-up lock.
    url = f"sqlite:///{tmp_path / 'untouched.db'}"
    app = create_app(Settings(database_url=url, secret_key=SECRET))
    app.state.runtime.engine.dispose()
    engine = make_engine(url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_process_with_another_secret_is_refused_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet member started with a different SCOPEGATE_SECRET_KEY cannot open the
    signing keys: ``scopegate migrate`` (and so ``serve``) says so and exits 2, without
    a traceback and without writing a second key; the app refuses to start."""
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    _prepare(url)
    other = "another-secret-" + "x" * 40
    monkeypatch.setenv("SCOPEGATE_DATABASE_URL", url)
    monkeypatch.setenv("SCOPEGATE_SECRET_KEY", other)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["migrate"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "SCOPEGATE_SECRET_KEY" in result.output
    assert "Traceback" not in result.output and other not in result.output
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(SigningKey)) == 1
    engine.dispose()
    app = create_app(Settings(database_url=url, secret_key=other))
    with pytest.raises(SecretMismatch), TestClient(app):
        pass
    app.state.runtime.engine.dispose()
