"""The shared server starter: subprocess servers are polled until they answer, a dead one
is reported with its output, and every one is stopped when the block ends; the in-thread
server serves the app it was given at the base URL it built it with."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from support.live_server import (
    free_port,
    live_server,
    running,
    spawn,
    wait_answer,
    wait_ready,
)


def _http_server(tmp_path: Path) -> tuple[list[str], int]:
    """``python -m http.server`` serving ``tmp_path`` (its listing at ``/``)."""
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
            "--directory", str(tmp_path), str(port)]
    return argv, port


def test_wait_ready_returns_each_servers_answer_and_running_stops_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "here.txt").write_text("yes")
    servers = []
    for name in ("one", "two"):
        argv, port = _http_server(tmp_path)
        servers.append(spawn(name, argv, port=port, log=tmp_path / f"{name}.log"))
    with running(*servers):
        answers = wait_ready(servers, "/here.txt")
        assert [a.text for a in answers] == ["yes", "yes"]
        assert [str(a.url) for a in answers] == [s.url("/here.txt") for s in servers]
        assert wait_answer(servers[0], "/missing", expect=404).status_code == 404
        assert wait_answer(servers[1], "/missing", expect=None).status_code == 404
    assert all(server.process.poll() is not None for server in servers)


def test_a_server_that_exits_is_reported_with_its_output(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('boom: bad settings'); sys.exit(3)"]
    server = spawn("broken", argv, port=free_port(), log=tmp_path / "broken.log")
    with running(server), pytest.raises(RuntimeError, match="broken exited") as raised:
        wait_ready([server])
    assert "boom: bad settings" in str(raised.value)


def test_a_server_that_never_answers_as_expected_is_reported(tmp_path: Path) -> None:
    argv, port = _http_server(tmp_path)
    server = spawn("wrong", argv, port=port, log=tmp_path / "wrong.log")
    with running(server), pytest.raises(RuntimeError, match="did not answer 200"):
        wait_ready([server], "/missing", seconds=1)


def test_live_server_serves_the_app_built_for_its_base_url() -> None:
    seen: list[str] = []

    def make_app(base_url: str) -> FastAPI:
        seen.append(base_url)
        app = FastAPI()

        @app.get("/where")
        def where() -> dict[str, str]:
            return {"base_url": base_url}

        return app

    with live_server(make_app) as server:
        answer = httpx.get(server.url("/where"), timeout=5)
        assert answer.json() == {"base_url": server.base_url}
        assert seen == [server.base_url]
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url("/where"), timeout=2)

