"""Structured logs: a live ``scopegate serve``'s log lines are JSON objects carrying the
request id, one access line per request, and no credential; ``SCOPEGATE_LOG_LEVEL`` is
honoured; the formatter keeps every record on one line."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from scopegate.settings import Settings
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.web.access_log import QueryRedactingFilter
from scopegate.web.json_logs import JsonFormatter, log_config
from scopegate.web.request_id import current_request_id
from support.live_server import HOST, ServerProcess, free_port, running, scopegate_env, wait_ready
from support.settings import SECRET
from support.world import World, build_world, user_token


@contextmanager
def served(tmp_path: Path, template: Path, **env: str) -> Iterator[tuple[ServerProcess, str, Path]]:
    """``scopegate serve`` (default log settings plus ``env``) with its stderr in a file
    of its own; yields the server, a member's token, and that file."""
    path = tmp_path / "scopegate.db"
    shutil.copy(template, path)
    engine = make_engine(f"sqlite:///{path}")
    with make_sessionmaker(engine)() as session:
        build_world(session)
        token = user_token(session, World.email("member"), {"org:read", "project:read"})
    engine.dispose()
    port = free_port()
    variables = {"SCOPEGATE_DATABASE_URL": f"sqlite:///{path}", "SCOPEGATE_SECRET_KEY": SECRET,
                 "SCOPEGATE_BASE_URL": f"http://{HOST}:{port}", **env}
    stderr = tmp_path / "stderr.log"
    with (tmp_path / "stdout.log").open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(  # noqa: S603 - a fixed argv
            [sys.executable, "-m", "scopegate.cli.main", "serve", "--host", HOST,
             "--port", str(port)], env=scopegate_env(variables), cwd=tmp_path,
            stdout=out, stderr=err)
    server = ServerProcess("serve", port, process, stderr)
    with running(server):
        wait_ready([server], "/healthz")
        yield server, token, stderr


def test_a_live_servers_log_lines_are_json_with_the_request_id_and_no_token(
        tmp_path: Path, sqlite_template: Path) -> None:
    with served(tmp_path, sqlite_template) as (server, token, stderr):
        client = httpx.Client(base_url=server.base_url)
        allowed = client.get("/api/0/organizations/acme/projects/",
                             headers={"Authorization": f"Bearer {token}",
                                      "X-Request-ID": "rid-allowed"})
        assert allowed.status_code == 200
        in_query = client.get(f"/api/0/organizations/?access_token={token}",
                              headers={"X-Request-ID": "rid-query"})
        assert in_query.status_code in (400, 401)
        generated = client.get("/no/such/page").headers["x-request-id"]
        client.close()
    lines = [line for line in stderr.read_text().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    access = {r["request_id"]: r for r in records if r["logger"] == "scopegate.access"}
    line = access["rid-allowed"]
    assert line["method"] == "GET" and line["status"] == 200
    assert line["route"] == "/api/0/organizations/{org}/projects/"
    assert line["client"] == HOST and line["duration_ms"] >= 0
    assert access["rid-query"]["target"] == "/api/0/organizations/?access_token=[redacted]"
    assert access[generated]["route"] == "unmatched"
    # One access line per request; uvicorn's own access log is off in JSON.
    assert not [r for r in records if r["logger"] == "uvicorn.access"]
    everything = stderr.read_text() + (tmp_path / "stdout.log").read_text()
    assert token not in everything
    assert token.removeprefix("sgu_") not in everything


def test_log_level_is_honoured_by_serve(tmp_path: Path, sqlite_template: Path) -> None:
    with served(tmp_path, sqlite_template, SCOPEGATE_LOG_LEVEL="WARNING") as (server, _, err):
        assert httpx.get(server.url("/healthz")).status_code == 200
    records = [json.loads(line) for line in err.read_text().splitlines() if line.strip()]
    assert all(r["level"] in ("WARNING", "ERROR", "CRITICAL") for r in records), records


def test_the_formatter_keeps_a_record_on_one_line_with_its_extras() -> None:
    record = logging.LogRecord("scopegate.security", logging.WARNING, __file__, 1,
                               "cross-org attempt\n{\"forged\": true}", None, None)
    record.org = "acme"
    token = current_request_id.set("rid-unit")
    try:
        text = JsonFormatter().format(record)
    finally:
        current_request_id.reset(token)
    assert "\n" not in text
    parsed = json.loads(text)
    assert parsed["message"] == "cross-org attempt\n{\"forged\": true}"
    assert parsed["request_id"] == "rid-unit" and parsed["org"] == "acme"
    assert parsed["level"] == "WARNING" and parsed["logger"] == "scopegate.security"
    assert parsed["time"].endswith("Z")


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_both_formats_keep_the_redacting_filter_on_every_handler(log_format: str) -> None:
    config = log_config(Settings(secret_key=SECRET, log_format=log_format))
    for handler in config["handlers"].values():
        assert config["filters"][handler["filters"][0]]["()"] is QueryRedactingFilter
    assert "scopegate" in config["loggers"]


def test_an_unknown_log_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log_level"):
        Settings(secret_key=SECRET, log_level="LOUD")
