"""Two scopegate processes for proxy-mode tests: an upstream (on its own SQLite file,
with the standard world) and a front door registered as its confidential OAuth client.

    with proxy_pair(database_url, sqlite_template, tmp_path) as pair:
        pair.mcp_url, pair.upstream.base_url, pair.restart_front() ...
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from scopegate.services.oauth import clients
from scopegate.store.db import make_engine
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
from support.world import World, build_world

#: The template database's signing key is sealed under the test secret: both use it.
UPSTREAM_SECRET = SECRET


@dataclass
class Pair:
    upstream: ServerProcess
    front: ServerProcess
    upstream_db: str
    front_db: str
    world: World
    client_secret: str
    front_env: dict[str, str]
    logs: Path

    def restart_front(self) -> None:
        """Stop the front door and start a new process on the same port and database."""
        self.front.stop()
        self.front = _serve("front-again", self.front.port, self.front_env, self.logs)
        wait_ready([self.front])

    @property
    def mcp_url(self) -> str:
        return self.front.url("/mcp")


def _serve(name: str, port: int, variables: dict[str, str], logs: Path) -> ServerProcess:
    argv = [sys.executable, "-m", "uvicorn", "scopegate.web.app:create_app", "--factory",
            "--host", HOST, "--port", str(port), "--lifespan", "on",
            "--log-level", "warning", "--no-access-log"]
    return spawn(name, argv, port=port, env=scopegate_env(variables), log=logs / f"{name}.log")


@contextmanager
def proxy_pair(database_url: str, sqlite_template: Path, tmp_path: Path,
               **front_settings: str) -> Iterator[Pair]:
    upstream_file = tmp_path / "upstream.db"
    shutil.copy(sqlite_template, upstream_file)
    upstream_db = f"sqlite:///{upstream_file}"
    up_port, front_port = free_port(), free_port()
    up_base, front_base = f"http://{HOST}:{up_port}", f"http://{HOST}:{front_port}"
    engine = make_engine(upstream_db)
    with Session(engine) as db:
        world = build_world(db)
        registered = clients.create_app(
            db, owner_id=world.users["owner"], name="scopegate MCP front door",
            redirect_uris=[front_base + "/oauth/callback"])
        db.commit()
    engine.dispose()
    assert registered.client_secret is not None
    upstream = _serve("upstream", up_port, {
        "SCOPEGATE_DATABASE_URL": upstream_db, "SCOPEGATE_BASE_URL": up_base,
        "SCOPEGATE_SECRET_KEY": UPSTREAM_SECRET}, tmp_path)
    front_env = {
        "SCOPEGATE_DATABASE_URL": database_url, "SCOPEGATE_BASE_URL": front_base,
        "SCOPEGATE_SECRET_KEY": SECRET, "SCOPEGATE_LOG_LEVEL": "DEBUG",
        "SCOPEGATE_UPSTREAM_ISSUER": up_base,
        "SCOPEGATE_UPSTREAM_CLIENT_ID": registered.client.client_id,
        "SCOPEGATE_UPSTREAM_CLIENT_SECRET": registered.client_secret,
        "SCOPEGATE_UPSTREAM_API_URL": up_base + "/api/0/", **front_settings}
    front = _serve("front", front_port, front_env, tmp_path)
    pair = Pair(upstream, front, upstream_db, database_url, world, registered.client_secret,
                front_env, tmp_path)
    try:
        wait_ready([upstream, front])
        yield pair
    finally:
        with running(pair.upstream, pair.front):
            pass


