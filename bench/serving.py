"""Serving the apps the throughput and rates benches measure, one subprocess each.

A ``Tree`` is the scopegate source to serve: the working tree, or a temporary git worktree
of a revision. Children run this file (``--child ROOT seed|serve ...``) with the tree's
``src`` first on ``PYTHONPATH``, so each revision is seeded and served by its own code;
every server gets the same settings (uvicorn, uvloop, httptools when installed, access
log off, log level warning, one worker, a listening socket created with ``IPPROTO_TCP``).
The parent starts them, polls for readiness and always stops them with the subprocess half
of ``tests/support/live_server.py`` (``served``, ``wait_answer``), the same as the tests.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # support.*

from harness import HOST, scratch_database, settings_for
from support.live_server import ServerProcess, bound_socket, free_port, running, spawn

REPO = Path(__file__).resolve().parent.parent
ORG = "acme"
ISSUES = f"/api/0/organizations/{ORG}/issues/"
ISSUES_ROUTE = "/api/0/organizations/{org}/issues/"
RELEASES = f"/api/0/organizations/{ORG}/releases/"
MINT = f"/api/0/organizations/{ORG}/agent/token/"
USER_TOKEN_SCOPES = frozenset({"org:read", "project:read", "event:read", "event:write"})
PAGE = 25
HTTP_IMPL = "httptools" if importlib.util.find_spec("httptools") else "auto"


# --- the code under test: one revision's tree ---------------------------------------------


@dataclass(frozen=True)
class Tree:
    """A source tree to serve scopegate from: the working tree or a git worktree."""

    root: Path
    label: str


CURRENT = Tree(REPO, "working tree")


@contextmanager
def worktree(rev: str) -> Iterator[Tree]:
    """A detached git worktree of ``rev`` in a temp dir, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="scopegate-bench-tree-"))
    path = folder / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet",
                    str(path), rev], check=True)
    try:
        short = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
                               check=True, capture_output=True, text=True).stdout.strip()
        yield Tree(path, f"{rev} ({short})" if short != rev else rev)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                       check=False)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def child(tree: Tree, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", str(tree.root), *args]


def child_env(tree: Tree) -> dict[str, str]:
    """The tree's ``src`` first on the path, so its scopegate wins over the editable one."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tree.root / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


# --- child side: runs with the tree's scopegate on sys.path ------------------------------
# The app factory is being reworked (issue #7): the three functions below are the only
# places that know how a database is prepared, an app built and its Permission bypassed.


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def prepare_database(settings: object) -> None:
    """Migrate and create the first signing key before any app is built."""
    if has_module("scopegate.runtime.prepare"):
        from scopegate.runtime.prepare import prepare

        prepare(settings)
        return
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from scopegate.services.keys import KeyRing
    from scopegate.store.migrate import upgrade

    engine = create_engine(settings.database_url)  # type: ignore[attr-defined]
    upgrade(engine)
    KeyRing(sessionmaker(engine), settings.secret()).ensure_active()  # type: ignore[attr-defined]
    engine.dispose()


def build_scopegate(settings: object, overridden: bool) -> object:
    """scopegate's app; with ``overridden``, GET issues' Permission returns fixed access."""
    from scopegate.web.app import create_app

    if "migrate" in inspect.signature(create_app).parameters:
        app = create_app(settings, migrate=False)  # type: ignore[arg-type]
    else:
        app = create_app(settings)  # type: ignore[arg-type]
    if overridden:
        override_permission(app)
    return app


def override_permission(app: object) -> None:
    """Bypass GET issues' ``Permission``: the tree's own ``bench/authz.py`` way (a fixed
    ``OrgAccess``) when it imports; else each async ``Permission`` answers its first
    (authenticated) call for real and every later call from memory, without auth."""
    try:
        from authz import disable_auth
    except ImportError:
        disable_auth = None
    if disable_auth is not None:
        disable_auth(app, ISSUES_ROUTE, "GET")
        return
    from scopegate.web.auth import Permission, api_routes

    routes = [m.route for m in api_routes(app.routes)  # type: ignore[attr-defined]
              if m.path == ISSUES_ROUTE and "GET" in m.methods]
    stack = [d for route in routes for d in route.dependant.dependencies]
    while stack:
        dependant = stack.pop()
        stack.extend(dependant.dependencies)
        permission = dependant.call
        if not isinstance(permission, Permission):
            continue
        if not inspect.iscoroutinefunction(permission.__call__) or dependant.dependencies:
            raise SystemExit("bench: cannot bypass this Permission; fix override_permission")
        app.dependency_overrides[permission] = _answer_once(permission)  # type: ignore[attr-defined]


def _answer_once(permission: Callable[..., object]) -> Callable[..., object]:
    first: list[object] = []

    async def remembered(*args: object, **kwargs: object) -> object:
        if not first:
            first.append(await permission(*args, **kwargs))  # type: ignore[misc]
        return first[0]

    remembered.__signature__ = inspect.signature(permission, eval_str=True)  # type: ignore[attr-defined]
    return remembered


def seed(url: str) -> dict[str, str]:
    """Prepare, seed the demo org plus 25 issues and 25 releases; mint a user and an org
    token. Returns the tokens and the demo owner's login."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from scopegate.core.roles import Role
    from scopegate.services import credentials, directory, issues, releases
    from scopegate.services.demo import DEMO_PASSWORD, DEMO_USERS, seed_demo
    from scopegate.store.models import Project

    settings = settings_for(url)
    prepare_database(settings)
    engine = create_engine(url)
    owner_email = DEMO_USERS[Role.OWNER]
    with Session(engine) as db:
        seed_demo(db)
        org = directory.get_org(db, ORG)
        owner = directory.get_user_by_email(db, owner_email)
        member = directory.get_user_by_email(db, DEMO_USERS[Role.MEMBER])
        projects = list(db.scalars(select(Project).where(Project.org_id == org.id)))
        for n in range(PAGE):
            issue = issues.create_issue(db, projects[n % len(projects)], f"Bench issue {n}")
            issue.assignee_id = member.id if n % 2 else None
            releases.create_release(db, org.id, f"1.{n}.0", [projects[n % len(projects)].slug])
        user = credentials.create_user_token(db, owner, USER_TOKEN_SCOPES, name="bench")
        org_token = credentials.create_org_token(db, org, owner, settings.base_url, name="bench")
        db.commit()
    engine.dispose()
    return {"user": user.token, "org": org_token.token, "email": owner_email,
            "password": DEMO_PASSWORD}


def serve(kind: str, url: str, port: int) -> None:
    """Serve one app on loopback ``port`` with the shared settings."""
    import uvicorn

    import baselines

    sock = bound_socket(port)  # IPPROTO_TCP: TCP_NODELAY on accepted connections
    if kind == "plain":
        app: object = baselines.plain_app()
    elif kind == "jwt":
        app = baselines.jwt_app()
    else:
        app = build_scopegate(settings_for(url, f"http://{HOST}:{port}"), kind == "overridden")
    config = uvicorn.Config(app, loop="uvloop", http=HTTP_IMPL, access_log=False,
                            log_level="warning", lifespan="on", workers=1)
    uvicorn.Server(config).run(sockets=[sock])


def child_main(root: str, argv: list[str]) -> None:
    """Seed or serve, with the tree's scopegate (PYTHONPATH) and its bench/authz.py."""
    sys.path.insert(0, str(Path(root) / "bench"))
    if argv[0] == "seed":
        print(json.dumps(seed(argv[1])), flush=True)
    else:
        serve(argv[1], argv[2], int(argv[3]))


# --- parent side: servers, readiness, databases -----------------------------------------


@contextmanager
def served(tree: Tree, kind: str, url: str = "") -> Iterator[ServerProcess]:
    """One app in its own subprocess; stopped on the way out, whatever happened. Returns
    once started, not once ready: ``wait_answer`` polls for that."""
    port = free_port()
    server = spawn(f"{kind} ({tree.label})", child(tree, "serve", kind, url, str(port)),
                   port=port, env=child_env(tree))
    with running(server):
        yield server


def seed_in(tree: Tree, url: str) -> dict[str, str]:
    done = subprocess.run(child(tree, "seed", url), capture_output=True, text=True,
                          env=child_env(tree), check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: seeding with {tree.label} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def databases(kind: str) -> list[tuple[str, Callable[[], AbstractContextManager[str]]]]:
    """SQLite always; PostgreSQL when SCOPEGATE_BENCH_DATABASE_URL names an admin URL."""

    @contextmanager
    def sqlite() -> Iterator[str]:
        with tempfile.TemporaryDirectory(prefix="scopegate-bench-") as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"

    found: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = [("sqlite", sqlite)]
    pg = os.environ.get("SCOPEGATE_BENCH_DATABASE_URL")
    if pg:
        found.append(("postgresql", lambda: scratch_database(pg, f"scopegate_bench_{kind}")))
    return found


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def require_tools() -> None:
    if importlib.util.find_spec("uvloop") is None:
        raise SystemExit("bench: uvloop is missing: pip install 'uvicorn[standard]'")


def environment() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPUs, load average {load}; uvicorn loop=uvloop "
            f"http={HTTP_IMPL}, 1 worker, access log off")


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit("usage: bench/throughput.py or bench/rates.py (this file serves them)")
