"""What the request gate costs in process. Prints figures, asserts none.

(a) Warm decision: ``Gate.check`` (authentication + access + permission) answered from
    memory, for a user token, an org token and an agent token; median and p95 in µs.
(b) Cache miss: the same decision with every cache forgotten, run the way a request
    runs it on a miss (``Gate.run_with_connection``: one worker-thread call with one
    connection); µs and the number of SQL statements it sent.
(c) A cold agent token: its claims not cached (a token never seen before: signature
    and claims verified), its deny-list and grant answers cached, against the raw
    Ed25519 ``verify`` of the same token's signature in the same run.

Over HTTP, see ``bench/throughput.py``. Runs on a temporary SQLite database, and also
on PostgreSQL when ``SCOPEGATE_BENCH_DATABASE_URL`` names one (a scratch database beside
it). Usage: ``python bench/authz.py`` (or ``make bench``).
"""

from __future__ import annotations

import base64
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from harness import HOST, Timing, scratch_database, settings_for, summarize, table
from scopegate.core.access import Principal
from scopegate.core.changes import Change, Topic
from scopegate.core.roles import Role
from scopegate.guard import Permission
from scopegate.guard.routes import api_routes, declared_scope_map
from scopegate.runtime.prepare import prepare as prepare_database
from scopegate.services import credentials, directory
from scopegate.services.access import OrgAccess
from scopegate.services.demo import DEMO_ORG, DEMO_USERS, seed_demo
from scopegate.services.gate import Presented, Verdict
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.web.api import issues, releases
from scopegate.web.app import create_app
from support.database import statements

ITERATIONS = 20_000
COLD_ITERATIONS = 300
CASE_SECONDS_MAX = 4.0
USER_TOKEN_SCOPES = frozenset({"org:read", "project:read", "event:read", "event:write"})
OWNER = DEMO_USERS[Role.OWNER]
BASE_URL = f"http://{HOST}"


@dataclass(frozen=True)
class Tokens:
    user: str
    org: str


def prepare(url: str) -> None:
    """What ``scopegate migrate`` does: migrations and the first signing key."""
    prepare_database(settings_for(url))


def seed(url: str) -> Tokens:
    """Prepare, seed the demo organization, and mint one user token and one org token."""
    prepare(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as db:
        seed_demo(db)
        owner = directory.get_user_by_email(db, OWNER)
        user = credentials.create_user_token(db, owner, USER_TOKEN_SCOPES, name="bench")
        org = credentials.create_org_token(
            db, directory.get_org(db, DEMO_ORG), owner, BASE_URL, name="bench"
        )
        db.commit()
    engine.dispose()
    return Tokens(user=user.token, org=org.token)


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="scopegate-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'bench.db'}"


# --- the app's Permission, bypassed (also used by bench/throughput.py) ---------------------


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
    """Answer ``path`` without authentication: its Permission becomes an async function
    returning a fixed ``OrgAccess`` (async, like the real one, so the hops compare)."""
    route = route_for(app, path, method)
    if declared_scope_map(route) is None:
        raise LookupError(f"{method} {path} declares no permission")
    rt = app.state.runtime
    with rt.factory() as db:
        owner = directory.get_user_by_email(db, OWNER)
    principal = Principal(kind=None, credential_ref="bench:no-auth", user_id=owner.id)
    precomputed = rt.gate.run_with_connection(
        lambda conn: rt.gate.org_access(principal, DEMO_ORG, conn, Verdict()))

    async def fixed_access() -> OrgAccess:
        return precomputed

    for permission in permission_dependencies(route):
        app.dependency_overrides[permission] = fixed_access


# --- measurements ------------------------------------------------------------------------


def timed(call: Callable[[], object], iterations: int) -> Timing:
    samples: list[float] = []
    deadline = time.monotonic() + CASE_SECONDS_MAX
    for _ in range(iterations):
        start = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - start) / 1000)
        if time.monotonic() > deadline:
            break
    return summarize(samples)


def forget_everything(app: FastAPI) -> None:
    """Every cache of the request path empty; the key ring kept (it is loaded at start-up
    and reloaded in the background, never on a request's miss)."""
    rt = app.state.runtime
    rt.feed.apply(Change(topic) for topic in Topic if topic is not Topic.KEYS)
    rt.agent_tokens.claims.forget()


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def run_backend(label: str, url: str) -> list[list[str]]:
    tokens = seed(url)
    app = create_app(settings_for(url, BASE_URL))
    rows: list[list[str]] = []
    with TestClient(app, base_url=BASE_URL) as client:
        minted = client.post(f"/api/0/organizations/{DEMO_ORG}/agent/token/",
                             json={"sessionId": "bench", "ttlSeconds": 3600},
                             headers={"Authorization": f"Bearer {tokens.user}"})
        minted.raise_for_status()
        agent = minted.json()["token"]
        rt = app.state.runtime
        gate = rt.gate
        cases = [
            ("user token", tokens.user, issues.ISSUES, "GET"),
            ("org token", tokens.org, releases.RELEASES, "POST"),
            ("agent token", agent, issues.ISSUES, "GET"),
        ]
        for name, token, scope_map, method in cases:
            presented = Presented(bearer=token)

            def decide(conn=None, presented=presented, scope_map=scope_map, method=method):
                return gate.check(scope_map, method, presented, DEMO_ORG, conn, Verdict())

            rt.confirm_changes()
            gate.run_with_connection(decide)  # warm the caches
            warm = timed(decide, ITERATIONS)

            def cold(decide=decide) -> None:
                forget_everything(app)
                gate.run_with_connection(decide)

            cold_timing = timed(cold, COLD_ITERATIONS)
            forget_everything(app)
            with statements(rt.engine) as sent:
                gate.run_with_connection(decide)
            rows.append([f"{label}: {name}", f"{warm.median_us:.1f}", f"{warm.p10_us:.1f}",
                         f"{warm.p95_us:.1f}",
                         f"{cold_timing.median_us:.0f}", str(len(sent))])

        # (c) a cold agent token against the raw Ed25519 verify of the same tokens.
        rt.confirm_changes()
        fresh = [client.post(f"/api/0/organizations/{DEMO_ORG}/agent/token/",
                             json={"sessionId": "bench", "ttlSeconds": 3600},
                             headers={"Authorization": f"Bearer {tokens.user}"}).json()["token"]
                 for _ in range(COLD_ITERATIONS)]
        presented_agents = [Presented(bearer=token) for token in fresh]
        gate.run_with_connection(lambda conn: gate.check(
            issues.ISSUES, "GET", presented_agents[0], DEMO_ORG, conn, Verdict()))
        public = rt.keys.active().key.public_key()
        parts = [token[4:].split(".") for token in fresh]
        raw = [(_b64decode(sig), f"{head}.{body}".encode()) for head, body, sig in parts]
        raw_samples, auth_samples, decision_samples = [], [], []
        half = COLD_ITERATIONS // 2
        for index in range(1, COLD_ITERATIONS):
            signature, signing_input = raw[index]
            start = time.perf_counter_ns()
            public.verify(signature, signing_input)
            raw_samples.append((time.perf_counter_ns() - start) / 1000)
            start = time.perf_counter_ns()
            if index < half:  # authentication alone: the token's first use
                gate.chain.authenticate(fresh[index], None)
                auth_samples.append((time.perf_counter_ns() - start) / 1000)
            else:  # the whole decision on a token's first use
                gate.check(issues.ISSUES, "GET", presented_agents[index], DEMO_ORG, None,
                           Verdict())
                decision_samples.append((time.perf_counter_ns() - start) / 1000)
        raw_t = summarize(raw_samples)
        for name, samples in (("authentication", auth_samples),
                              ("whole decision", decision_samples)):
            cold_t = summarize(samples)
            rows.append([f"{label}: new agent token, {name}", f"{cold_t.median_us:.1f}",
                         f"{cold_t.p10_us:.1f}", f"{cold_t.p95_us:.1f}",
                         f"{cold_t.median_us / raw_t.median_us:.2f}x raw "
                         f"(p10 {cold_t.p10_us / raw_t.p10_us:.2f}x)", "0"])
        rows.append([f"{label}: raw Ed25519 verify", f"{raw_t.median_us:.1f}",
                     f"{raw_t.p10_us:.1f}", f"{raw_t.p95_us:.1f}", "-", "-"])
    return rows


def main() -> None:
    print(f"scopegate gate bench — Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}")
    rows: list[list[str]] = []
    backends: list[tuple[str, AbstractContextManager[str]]] = [("SQLite", sqlite_database())]
    pg = os.environ.get("SCOPEGATE_BENCH_DATABASE_URL")
    if pg:
        backends.append(("PostgreSQL", scratch_database(pg, "scopegate_bench_gate")))
    for label, database in backends:
        with database as url:
            rows += run_backend(label, url)
    print(table(["case", "warm median µs", "warm p10 µs", "warm p95 µs", "miss median µs",
                 "miss SQL"], rows))
    print("warm: Gate.check from memory, no I/O. miss: every cache forgotten, the decision "
          "run with one connection\n(what a request does on a miss); 'miss SQL' counts the "
          "statements it sent (the change-counter poll included when due). p10: the 10th "
          "percentile,\nthe least disturbed by other load on a shared machine (the median is "
          "the figure issue #7 bounds).")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    _ = httpx  # the TestClient's transport
    main()
