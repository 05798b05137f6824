"""The examples run as their README says: ``examples/notes_service.py`` (a FastAPI
service of its own behind the guard, in remote and in local mode) and
``examples/agent_notes.py`` (an agent using ``scopegate.client``), each as a separate
process on loopback against a scopegate server process on the same SQLite file.

The agent reads, is refused its first write with an approval URL, which it prints; the
person (here: a plain HTTP browser session) approves it; the agent's client notices the
grant, mints again and writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scopegate.store.db import make_engine, make_sessionmaker
from support.agent import approve_via_api
from support.http import login
from support.live_server import (
    HOST,
    ServerProcess,
    free_port,
    running,
    scopegate_env,
    spawn,
    wait_ready,
)
from support.settings import SECRET
from support.world import World, build_world, user_token

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPT_SECONDS = 60


@dataclass
class Scopegate:
    server: ServerProcess
    env: dict[str, str]
    person: str
    email: str


@pytest.fixture
def scopegate(sqlite_url: str, tmp_path: Path) -> Iterator[Scopegate]:
    """A scopegate server process on a migrated SQLite file with the test world; a
    member's user token (read and write, as their role allows)."""
    engine = make_engine(sqlite_url)
    with make_sessionmaker(engine)() as db:
        build_world(db)
        email = World.email("member")
        person = user_token(db, email, {"org:read", "event:read", "event:write"})
    engine.dispose()
    port = free_port()
    variables = {"SCOPEGATE_DATABASE_URL": sqlite_url, "SCOPEGATE_SECRET_KEY": SECRET,
                 "SCOPEGATE_BASE_URL": f"http://{HOST}:{port}", "SCOPEGATE_LOG_LEVEL": "WARNING"}
    argv = [sys.executable, "-m", "uvicorn", "scopegate.web.app:create_app", "--factory",
            "--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    server = spawn("scopegate", argv, port=port, env=scopegate_env(variables),
                   log=tmp_path / "scopegate.log")
    with running(server):
        wait_ready([server])
        yield Scopegate(server, variables, person, email)


def _notes_service(env: dict[str, str], log: Path) -> ServerProcess:
    port = int(env["NOTES_PORT"])
    argv = [sys.executable, "-m", "uvicorn", "notes_service:app", "--app-dir", str(EXAMPLES),
            "--host", HOST, "--port", str(port), "--log-level", "warning"]
    return spawn("notes", argv, port=port, env=scopegate_env(env), log=log)


def _register(scopegate: Scopegate, audience: str) -> dict[str, str]:
    """``scopegate resource-server add`` as an operator runs it."""
    done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [str(Path(sys.executable).with_name("scopegate")), "resource-server", "add", audience,
         "--name", "Notes", "--json"],
        env=scopegate_env(scopegate.env), capture_output=True, text=True, timeout=60,
        check=True)
    return json.loads(done.stdout)


def _approve(scopegate: Scopegate, url: str, scopes: list[str], session_id: str) -> None:
    """The person, in a browser session on scopegate, approves what the agent asked."""
    assert url.startswith(scopegate.server.url("/organizations/acme/agent/approve?"))
    with httpx.Client(base_url=scopegate.server.base_url, timeout=10) as browser:
        csrf = login(browser, scopegate.email)  # type: ignore[arg-type]
        approved = approve_via_api(browser, csrf, scopes, session=session_id)  # type: ignore[arg-type]
        assert approved.status_code == 201, approved.text


def _run_agent(scopegate: Scopegate, env: dict[str, str], session_id: str) -> list[str]:
    """Run the agent script; approve when it prints its approval URL; its output."""
    agent = subprocess.Popen(  # noqa: S603 - our own example, fixed arguments
        [sys.executable, str(EXAMPLES / "agent_notes.py"), "Deploy went fine"],
        env=scopegate_env({"SCOPEGATE_URL": scopegate.server.base_url,
                           "PERSON_TOKEN": scopegate.person, "ORG": "acme",
                           "SESSION_ID": session_id, "APPROVAL_TIMEOUT": "30", **env}),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    timer = threading.Timer(SCRIPT_SECONDS, agent.kill)
    timer.start()
    try:
        assert agent.stdout is not None
        for line in agent.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("approve "):
                scopes, _, url = line.removeprefix("approve ").partition(" at: ")
                _approve(scopegate, url.strip(), scopes.split(), session_id)
        agent.wait()
    finally:
        timer.cancel()
    assert agent.returncode == 0, "\n".join(lines)
    return lines


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_the_example_service_and_agent_run_on_loopback(scopegate: Scopegate, tmp_path: Path,
                                                       mode: str) -> None:
    notes_port = free_port()
    notes_url = f"http://{HOST}:{notes_port}/"
    env = {"NOTES_PORT": str(notes_port)}
    agent_env = {"NOTES_URL": notes_url}
    if mode == "remote":
        registered = _register(scopegate, notes_url)
        env |= {"NOTES_SCOPEGATE_URL": scopegate.server.base_url, "NOTES_AUDIENCE": notes_url,
                "NOTES_CLIENT_ID": registered["client_id"],
                "NOTES_CLIENT_SECRET": registered["client_secret"]}
        agent_env["NOTES_AUDIENCE"] = notes_url
    else:
        env |= scopegate.env
    notes = _notes_service(env, tmp_path / "notes.log")
    with running(notes):
        wait_ready([notes], "/openapi.json")
        lines = _run_agent(scopegate, agent_env, f"notes-{mode}")
        with httpx.Client(timeout=10) as plain:
            unauthenticated = plain.get(notes.url("/organizations/acme/notes/"))
    assert lines[0] == "read 200: 0 notes"
    assert lines[1].startswith("approve event:write at: ")
    assert lines[2].startswith("write 201: ") and "Deploy went fine" in lines[2]
    assert unauthenticated.status_code == 401
