"""``scopegate serve --workers N``: the database is prepared once, then N processes serve."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from support.live_server import HOST, free_port, running, scopegate_env, spawn, wait_ready
from support.settings import SECRET

WORKERS = 2


def test_serve_with_workers_prepares_once_and_every_worker_answers(tmp_path: Path) -> None:
    port = free_port()
    env = scopegate_env({
        "SCOPEGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "SCOPEGATE_SECRET_KEY": SECRET,
        "SCOPEGATE_BASE_URL": f"http://{HOST}:{port}",
    })
    log = tmp_path / "serve.log"
    server = spawn("serve", [sys.executable, "-m", "scopegate.cli.main", "serve", "--demo",
                             "--host", HOST, "--port", str(port), "--workers", str(WORKERS)],
                   port=port, env=env, log=log, cwd=tmp_path)
    with running(server):
        wait_ready([server], "/login")
        with httpx.Client(base_url=f"http://{HOST}:{port}") as client:
            answers = [client.get("/login", headers={"Connection": "close"}).status_code
                       for _ in range(20)]
        assert answers == [200] * 20
    output = log.read_text()
    # One worker process per --workers, each started by uvicorn's supervisor.
    assert output.count("Started server process") == WORKERS, output
    assert "Demo organization 'acme' created" in output
