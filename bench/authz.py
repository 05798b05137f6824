"""What authentication and authorization cost per request. Prints figures, asserts none.

(a) In process: ``runtime.chain.authenticate`` + ``access_for`` + ``ScopeMap.decide`` for a
    user token and for an org token, timed over many iterations (median and p95, µs).
(b) Over loopback HTTP: requests/second for an authenticated
    ``GET /api/0/organizations/acme/issues/`` against the same GET with the route's
    ``Permission`` dependency overridden by a precomputed ``OrgAccess`` (no auth at all).

Runs on a temporary SQLite database, and also on PostgreSQL when
``SCOPEGATE_BENCH_DATABASE_URL`` names one (a scratch database is created beside it and
dropped afterwards). Usage: ``python bench/authz.py`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute

from harness import HOST, Timing, scratch_database, settings_for, summarize, table
from scopegate.core.access import Principal
from scopegate.core.permissions import ScopeMap
from scopegate.core.roles import Role
from scopegate.services import credentials, directory
from scopegate.services.access import OrgAccess, access_for
from scopegate.services.demo import DEMO_ORG, DEMO_USERS, seed_demo
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.migrate import upgrade
from scopegate.web.api import issues, releases
from scopegate.web.app import build_runtime, create_app
from scopegate.web.auth import Permission, api_routes, declared_scope_map

# Bounded in count and in time: a busy machine reports fewer samples, never runs long.
ITERATIONS = 5_000
WARMUP = 200
CASE_SECONDS_MAX = 4.0
HTTP_REQUESTS = 2_000
HTTP_WARMUP = 100
HTTP_CLIENTS = 4
HTTP_SECONDS_MAX = 5.0
ISSUES_PATH = "/api/0/organizations/{org}/issues/"
USER_TOKEN_SCOPES = frozenset({"org:read", "project:read", "event:read", "event:write"})
OWNER = DEMO_USERS[Role.OWNER]


# --- databases --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    user: str
    org: str


def seed(url: str) -> Tokens:
    """Migrate, seed the demo organization, and mint one user token and one org token."""
    engine = make_engine(url)
    upgrade(engine)
    with make_sessionmaker(engine)() as db:
        seed_demo(db)
        owner = directory.get_user_by_email(db, OWNER)
        user = credentials.create_user_token(db, owner, USER_TOKEN_SCOPES, name="bench")
        org = credentials.create_org_token(
            db, directory.get_org(db, DEMO_ORG), owner, f"http://{HOST}", name="bench"
        )
        db.commit()
    engine.dispose()
    return Tokens(user=user.token, org=org.token)


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="scopegate-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'bench.db'}"


# --- (a) in process ----------------------------------------------------------------------


def time_decision(url: str, token: str, scope_map: ScopeMap, method: str) -> Timing:
    """authenticate + access_for + decide, one fresh session per iteration (as per request)."""
    rt = build_runtime(settings_for(url), migrate=False)
    samples: list[float] = []
    deadline = time.monotonic() + CASE_SECONDS_MAX
    try:
        for i in range(WARMUP + ITERATIONS):
            if time.monotonic() > deadline:
                break
            db = rt.factory()
            try:
                start = time.perf_counter_ns()
                principal = rt.chain.authenticate(db, token)
                org_access = access_for(db, principal, DEMO_ORG)
                decision = scope_map.decide(method, org_access.access.scopes)
                elapsed = time.perf_counter_ns() - start
                db.commit()
            finally:
                db.close()
            if not decision.allowed:
                raise SystemExit(f"bench setup error: {principal.credential_ref} was denied")
            if i >= WARMUP:
                samples.append(elapsed / 1000)
    finally:
        rt.engine.dispose()
    return summarize(samples)


# --- (b) over HTTP -----------------------------------------------------------------------


def route_for(app: FastAPI, path: str, method: str) -> APIRoute:
    for mounted in api_routes(app.routes):
        if mounted.path == path and method in mounted.methods:
            return mounted.route
    raise LookupError(f"no route {method} {path}")


def permission_dependencies(route: APIRoute) -> list[Permission]:
    """The ``Permission`` instances a route depends on (found by walking its dependant)."""
    found = []
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if isinstance(dependant.call, Permission):
            found.append(dependant.call)
        stack.extend(dependant.dependencies)
    return found


def disable_auth(app: FastAPI, path: str, method: str) -> None:
    """Answer ``path`` without authentication: its Permission returns a fixed OrgAccess."""
    route = route_for(app, path, method)
    if declared_scope_map(route) is None:
        raise LookupError(f"{method} {path} declares no permission")
    rt = app.state.runtime
    with rt.factory() as db:
        owner = directory.get_user_by_email(db, OWNER)
        principal = Principal(kind=None, credential_ref="bench:no-auth", user_id=owner.id)
        precomputed = access_for(db, principal, DEMO_ORG)

    def fixed_access() -> OrgAccess:
        return precomputed

    for permission in permission_dependencies(route):
        app.dependency_overrides[permission] = fixed_access


def serve(url: str, mode: str) -> None:
    """Subprocess entry: serve the app on a free loopback port, printed on stdout."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    app = create_app(settings_for(url, f"http://{HOST}:{port}"), migrate=False)
    if mode == "open":
        disable_auth(app, ISSUES_PATH, "GET")
    print(port, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


@dataclass
class Server:
    process: subprocess.Popen[str]
    base_url: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_server(url: str, mode: str) -> Server:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", url, "--mode", mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.isdigit():
        process.kill()
        raise SystemExit(f"bench server ({mode}) failed to start")
    return Server(process, f"http://{HOST}:{line}")


def wait_ready(base_url: str, headers: dict[str, str], path: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(base_url + path, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"bench server at {base_url} did not answer 200 on {path}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Throughput:
    rate: float
    completed: int
    errors: int
    seconds: float


def drive(base_url: str, path: str, headers: dict[str, str]) -> Throughput:
    """HTTP_REQUESTS GETs from HTTP_CLIENTS threads (keep-alive), bounded in time too."""
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as warm:
        for _ in range(HTTP_WARMUP):
            warm.get(path)
    per_client = HTTP_REQUESTS // HTTP_CLIENTS
    counts = [0] * HTTP_CLIENTS
    errors = [0] * HTTP_CLIENTS
    barrier = threading.Barrier(HTTP_CLIENTS + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        with httpx.Client(base_url=base_url, headers=headers, timeout=10) as http:
            http.get(path)  # open the connection before the clock starts
            barrier.wait()
            for _ in range(per_client):
                if time.monotonic() > deadline[0]:
                    break
                if http.get(path).status_code == 200:
                    counts[index] += 1
                else:
                    errors[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(HTTP_CLIENTS)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + HTTP_SECONDS_MAX
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    done = sum(counts)
    return Throughput(rate=done / seconds, completed=done, errors=sum(errors), seconds=seconds)


def http_throughput(url: str, token: str) -> dict[str, Throughput]:
    path = ISSUES_PATH.format(org=DEMO_ORG)
    headers = {"Authorization": f"Bearer {token}"}  # sent to both: same request bytes
    servers: dict[str, Server] = {}
    try:
        for mode in ("auth", "open"):
            servers[mode] = start_server(url, mode)
        for mode, server in servers.items():
            wait_ready(server.base_url, headers, path)
            # Sanity, not timing: only the "open" server answers without a credential.
            anonymous = httpx.get(server.base_url + path, timeout=10).status_code
            if anonymous != {"auth": 401, "open": 200}[mode]:
                raise SystemExit(f"bench setup error: {mode} server answered {anonymous}")
        return {mode: drive(server.base_url, path, headers) for mode, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()


# --- report ------------------------------------------------------------------------------


def run_backend(label: str, url: str) -> tuple[list[list[str]], list[list[str]]]:
    tokens = seed(url)
    cases: list[tuple[str, str, ScopeMap, str]] = [
        ("user token, GET issues", tokens.user, issues.ISSUES, "GET"),
        ("org token, POST releases", tokens.org, releases.RELEASES, "POST"),
    ]
    in_process = []
    for name, token, scope_map, method in cases:
        timing = time_decision(url, token, scope_map, method)
        in_process.append(
            [label, name, f"{timing.median_us:.0f}", f"{timing.p95_us:.0f}", str(timing.iterations)]
        )
    rates = http_throughput(url, tokens.user)
    auth, open_ = rates["auth"], rates["open"]
    http_rows = [
        [label, "authenticated", f"{auth.rate:.0f}", str(auth.completed), str(auth.errors),
         f"{auth.seconds:.1f}"],
        [label, "auth disabled", f"{open_.rate:.0f}", str(open_.completed), str(open_.errors),
         f"{open_.seconds:.1f}"],
        [label, "ratio auth/disabled", f"{auth.rate / open_.rate:.2f}", "", "", ""],
    ]
    return in_process, http_rows


def main() -> None:
    started = time.perf_counter()
    backends: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = [
        ("sqlite", sqlite_database)
    ]
    pg = os.environ.get("SCOPEGATE_BENCH_DATABASE_URL")
    if pg:
        backends.append(("postgresql", lambda: scratch_database(pg, "scopegate_bench_authz")))
    print(
        f"scopegate authz bench: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{ITERATIONS} iterations in process, {HTTP_REQUESTS} requests x {HTTP_CLIENTS} "
        f"clients over loopback HTTP"
    )
    if not pg:
        print("(set SCOPEGATE_BENCH_DATABASE_URL to also measure PostgreSQL)")
    in_process: list[list[str]] = []
    http_rows: list[list[str]] = []
    for label, database in backends:
        with database() as url:
            rows_a, rows_b = run_backend(label, url)
        in_process += rows_a
        http_rows += rows_b
    print("\n(a) authenticate + access_for + ScopeMap.decide, per request, in process")
    print(table(["db", "credential", "median µs", "p95 µs", "n"], in_process))
    print(f"\n(b) GET {ISSUES_PATH.format(org=DEMO_ORG)} over loopback HTTP (1 uvicorn process)")
    print(table(["db", "variant", "req/s", "ok", "errors", "seconds"], http_rows))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("auth", "open"), default="auth", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.mode)
    else:
        main()
