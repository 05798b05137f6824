"""What the guard costs in remote mode. Prints figures, asserts none.

A small FastAPI app of its own serves one route twice: behind ``Guard.remote`` and
without any guard; a scopegate server runs as a subprocess on a temporary SQLite
database. Requests go to the app in process (httpx's ASGI transport: no sockets on the
measured path), one at a time, in interleaved rounds so both routes see the same machine.

(a) Warm: the guard's caches hold the answer (introspection answer, verified agent
    claims, keys, a fresh deny list): median and p95 µs per request, and the ratio to
    the unguarded route.
(b) Cold: the first request of a token never seen before: a user token (one RFC 7662
    introspection round trip to the server) and an agent token (its JWS verified
    against the cached JWKS, no round trip).

Usage: ``python bench/guard_remote.py [--iterations N] [--cold N]`` (or ``make bench-guard``).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import Depends, FastAPI

from harness import HOST, SECRET, Timing, settings_for, summarize, table
from scopegate.core.roles import Role
from scopegate.guard import Guard, OrgAccess, Permission, Rule, ScopeMap, scopes
from scopegate.runtime.prepare import prepare as prepare_database
from scopegate.services import credentials, directory, resource_servers
from scopegate.services.demo import DEMO_ORG, DEMO_USERS, seed_demo
from scopegate.store.db import make_engine, make_sessionmaker
from support.live_server import free_port, running, scopegate_env, spawn, wait_ready

#: An identifier: requests reach the app in process, never this address.
AUDIENCE = f"http://{HOST}:9/notes/"
THINGS = ScopeMap({"GET": Rule((scopes.EVENT_READ, scopes.EVENT_WRITE), "view things")})
PERSON_SCOPES = frozenset({scopes.ORG_READ, scopes.PROJECT_READ, scopes.EVENT_READ})


def seed(url: str, base_url: str, cold: int) -> dict[str, Any]:
    """Migrate and seed; the owner's tokens (one warm, ``cold`` fresh) and the resource
    server's credentials."""
    settings = settings_for(url, base_url)
    prepare_database(settings)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as db:
        seed_demo(db)
        owner = directory.get_user_by_email(db, DEMO_USERS[Role.OWNER])
        tokens = [credentials.create_user_token(db, owner, PERSON_SCOPES).token
                  for _ in range(cold + 1)]
        registered = resource_servers.register(db, settings, AUDIENCE, "bench notes")
        db.commit()
    engine.dispose()
    return {"user": tokens[0], "cold_users": tokens[1:], "client_id": registered.client_id,
            "client_secret": registered.client_secret}


def mint_agents(base_url: str, person: str, count: int) -> list[str]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        minted = []
        for n in range(count):
            answer = client.post(f"/api/0/organizations/{DEMO_ORG}/agent/token/",
                                 json={"sessionId": f"bench-{n}", "audience": AUDIENCE},
                                 headers={"Authorization": f"Bearer {person}"})
            answer.raise_for_status()
            minted.append(answer.json()["token"])
    return minted


def notes_app(guard: Guard) -> FastAPI:
    app = FastAPI()
    guard.install(app)

    @app.get("/organizations/{org}/guarded/")
    async def guarded(org: str, oa: OrgAccess = Depends(Permission(THINGS))) -> dict[str, Any]:
        return {"org": org, "ok": True}

    @app.get("/organizations/{org}/plain/")
    async def plain(org: str) -> dict[str, Any]:
        return {"org": org, "ok": True}

    return app


async def timed(client: httpx.AsyncClient, path: str, token: str | None) -> float:
    # An in-process request may complete without ever suspending; yield once so the
    # guard's background deny-list poll runs between requests, as it would in a server.
    await asyncio.sleep(0)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    started = time.perf_counter_ns()
    answer = await client.get(path, headers=headers)
    elapsed = (time.perf_counter_ns() - started) / 1000
    if answer.status_code != 200:
        raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:200]}")
    return elapsed


async def measure(guard: Guard, tokens: dict[str, Any], iterations: int
                  ) -> dict[str, Timing]:
    app = notes_app(guard)
    plain = f"/organizations/{DEMO_ORG}/plain/"
    guarded = f"/organizations/{DEMO_ORG}/guarded/"
    warm = {"no guard": (plain, None), "guard, user token (warm)": (guarded, tokens["user"]),
            "guard, agent token (warm)": (guarded, tokens["agent"])}
    samples: dict[str, list[float]] = {name: [] for name in warm}
    cold: dict[str, list[float]] = {"guard, user token (cold)": [],
                                    "guard, agent token (cold)": []}
    async with guard.running(), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}:9") as client:
        for path, token in warm.values():  # warm up: caches filled, code paths loaded
            for _ in range(200):
                await timed(client, path, token)
        rounds = 5
        for _ in range(rounds):
            for name, (path, token) in warm.items():
                for _ in range(iterations // rounds):
                    samples[name].append(await timed(client, path, token))
        for token in tokens["cold_users"]:
            cold["guard, user token (cold)"].append(await timed(client, guarded, token))
        for token in tokens["cold_agents"]:
            cold["guard, agent token (cold)"].append(await timed(client, guarded, token))
    return {name: summarize(values) for name, values in {**samples, **cold}.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--cold", type=int, default=200)
    args = parser.parse_args()
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    with tempfile.TemporaryDirectory(prefix="scopegate-bench-") as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        tokens = seed(url, base_url, args.cold)
        env = scopegate_env({"SCOPEGATE_DATABASE_URL": url, "SCOPEGATE_SECRET_KEY": SECRET,
                             "SCOPEGATE_BASE_URL": base_url, "SCOPEGATE_LOG_LEVEL": "WARNING"})
        argv = [sys.executable, "-m", "uvicorn", "scopegate.web.app:create_app", "--factory",
                "--host", HOST, "--port", str(port), "--log-level", "warning",
                "--no-access-log"]
        server = spawn("scopegate", argv, port=port, env=env, log=Path(folder) / "server.log")
        with running(server):
            wait_ready([server])
            agents = mint_agents(base_url, tokens["user"], args.cold + 1)
            tokens["agent"], tokens["cold_agents"] = agents[0], agents[1:]
            guard = Guard.remote(server_url=base_url, audience=AUDIENCE,
                                 client_id=tokens["client_id"],
                                 client_secret=tokens["client_secret"])
            timings = asyncio.run(measure(guard, tokens, args.iterations))
    baseline = timings["no guard"].median_us
    rows = [[name, f"{t.median_us:,.0f}", f"{t.p95_us:,.0f}", f"{t.iterations:,}",
             f"{t.median_us / baseline:.2f}x", f"+{t.median_us - baseline:,.0f}"]
            for name, t in timings.items()]
    print(f"guard in remote mode, in-process ASGI requests; {platform.python_version()}, "
          f"{platform.machine()}")
    print(table(["request", "median µs", "p95 µs", "n", "vs no guard", "added µs"], rows))


if __name__ == "__main__":
    main()
