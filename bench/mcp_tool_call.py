"""The cost of one MCP tool call next to calling the same API route directly.

One scopegate subprocess per database (seeded like the throughput bench) serves both
``/mcp`` and the API. This process writes an OAuth access token for ``/mcp`` into the
database (inspect scopes, acme only), then, one request at a time on loopback:

* ``direct``: ``GET /api/0/organizations/acme/issues/?perPage=5`` with an agent token;
* ``MCP``: ``tools/call find_issues`` (acme, limit 5) through the official ``mcp`` client
  (protocol 2026-07-28), which the server turns into an agent-token call to that route;
* ``whoami``: a tool call that makes no API call (one read of the person's row): what the
  MCP round trip alone costs.

Prints median and p99 latency of each and the overhead of the MCP path (what the tool call
adds: the MCP request, the gate for ``/mcp``, the agent token, the inner API call and the
result). Usage: ``python bench/mcp_tool_call.py [--count N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # support.*

import anyio
import httpx
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from harness import table
from serving import CURRENT, ISSUES, ORG, databases, environment, seed_in, served
from support.live_server import wait_answer
from support.mcp_client import bearer_client

WARMUP = 50


def mcp_token(url: str, base_url: str) -> str:
    """An access token for ``<base>/mcp`` with the inspect scopes, for acme's owner."""
    from scopegate.core import mcp_capabilities as caps
    from scopegate.core.roles import Role
    from scopegate.services import directory
    from scopegate.services.demo import DEMO_USERS
    from scopegate.services.oauth import clients, tokens

    engine = create_engine(url)
    scopes = frozenset(caps.REQUIRED_SCOPES)
    with Session(engine) as db:
        org = directory.get_org(db, ORG)
        owner = directory.get_user_by_email(db, DEMO_USERS[Role.OWNER]).id
        new = clients.create_app(db, owner_id=owner, name="bench MCP client",
                                 redirect_uris=["http://127.0.0.1:9999/callback"], public=True)
        grant = tokens.open_grant(db, client=new.client, user_id=owner, scopes=scopes,
                                  org_ids=[org.id], resource=base_url + "/mcp")
        response = tokens.token_response(scopes, access_seconds=3600, refresh=False)
        tokens.save(db, grant.id, response, refresh_seconds=3600)
        db.commit()
    engine.dispose()
    return str(response["access_token"])


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(url: str, count: int) -> dict[str, list[float]]:
    seeded = seed_in(CURRENT, url)
    with served(CURRENT, "scopegate", url) as server:
        wait_answer(server, "/.well-known/oauth-protected-resource/mcp")
        token = mcp_token(url, server.base_url)
        minted = httpx.post(server.base_url + f"/api/0/organizations/{ORG}/agent/token/",
                            json={"sessionId": "bench"},
                            headers={"Authorization": f"Bearer {seeded['user']}"})
        minted.raise_for_status()
        agent = minted.json()["token"]

        direct: list[float] = []
        with httpx.Client(base_url=server.base_url,
                          headers={"Authorization": f"Bearer {agent}"}) as client:
            for n in range(WARMUP + count):
                started = time.perf_counter()
                answer = client.get(ISSUES, params={"perPage": 5})
                elapsed = time.perf_counter() - started
                answer.raise_for_status()
                if n >= WARMUP:
                    direct.append(elapsed)

        tool: list[float] = []
        bare: list[float] = []

        async def calls(name: str, arguments: dict[str, object], into: list[float]) -> None:
            async with bearer_client(server.base_url + "/mcp", token) as client:
                for n in range(WARMUP + count):
                    started = time.perf_counter()
                    result = await client.call_tool(name, arguments)
                    elapsed = time.perf_counter() - started
                    if result.is_error:
                        raise SystemExit(f"bench: tool call failed: {result.content}")
                    if n >= WARMUP:
                        into.append(elapsed)

        anyio.run(calls, "find_issues", {"organizationSlug": ORG, "limit": 5}, tool)
        anyio.run(calls, "whoami", {}, bare)
        return {"direct API GET (agent token)": direct, "MCP tools/call find_issues": tool,
                "MCP tools/call whoami (no API call)": bare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"scopegate MCP tool call bench: {environment()}")
    print(f"one request at a time, {args.count} measured after {WARMUP} warm-up, loopback")
    rows = []
    for label, database in databases("mcp"):
        with database() as url:
            samples = run(url, args.count)
        direct = samples["direct API GET (agent token)"]
        for mode, values in samples.items():
            median, p99 = statistics.median(values) * 1000, percentile(values, 0.99) * 1000
            extra = ""
            if values is not direct:
                extra = (f"+{median - statistics.median(direct) * 1000:.2f} ms median, "
                         f"+{p99 - percentile(direct, 0.99) * 1000:.2f} ms p99")
            rows.append([label, mode, f"{median:.2f} ms", f"{p99:.2f} ms", extra])
    print()
    print(table(["database", "path", "median", "p99", "overhead vs direct"], rows))
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
