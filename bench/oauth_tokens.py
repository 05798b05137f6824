"""Token endpoint rates: authorization code exchanges and refreshes per second, next to a
bare Starlette route, on SQLite and (with ``SCOPEGATE_BENCH_DATABASE_URL``) PostgreSQL.

Each database is seeded like the throughput bench (``bench/serving.py``), then this
process writes straight into it what a run consumes: a confidential client, ``--count``
authorization codes (PKCE S256, each with its own verifier) and as many refresh tokens,
each in its own grant. The working tree's scopegate and the bare route are each served by
one uvicorn subprocess with the shared settings; the shared load driver
(``tests/support/load.py``, one keep-alive client per thread, ``CLIENTS`` threads) sends
one ``POST /oauth/token`` per code or refresh token (client_secret_basic), then as many
``GET``s to the bare route. Prints the rates, the ratio to the bare route, and any
non-200 answers. Usage: ``python bench/oauth_tokens.py [--count N]``.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # support.*

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import baselines
from harness import table
from serving import CURRENT, ORG, databases, environment, require_tools, seed_in, served
from support.live_server import wait_answer
from support.load import LoadResult, burst

CLIENTS = 32
REDIRECT_URI = "http://127.0.0.1:9999/callback"


def stock(url: str, base_url: str, count: int) -> dict[str, object]:
    """A client, ``count`` codes and ``count`` refresh tokens, written into ``url``."""
    from scopegate.core import scopes as registry
    from scopegate.core.roles import Role
    from scopegate.services import directory
    from scopegate.services.demo import DEMO_USERS
    from scopegate.services.oauth import clients, tokens
    from scopegate.store.oauth_models import OAuthCode
    from scopegate.store.types import utcnow

    engine = create_engine(url)
    scopes = frozenset({registry.EVENT_READ, registry.PROJECT_READ})
    codes, refresh = [], []
    with Session(engine) as db:
        org = directory.get_org(db, ORG)
        owner = directory.get_user_by_email(db, DEMO_USERS[Role.OWNER]).id
        new = clients.create_app(db, owner_id=owner, name="bench", redirect_uris=[REDIRECT_URI])
        far = utcnow() + timedelta(hours=1)  # a run outlasts the 60 s a real code lives
        for _ in range(count):
            code, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
            db.add(OAuthCode(code_hash=tokens.token_hash(code), client_pk=new.client.pk,
                             user_id=owner, redirect_uri=REDIRECT_URI, scopes=scopes,
                             org_ids=[org.id], resource=base_url + "/api/0/",
                             code_challenge=create_s256_code_challenge(verifier),
                             expires_at=far))
            codes.append((code, verifier))
            grant = tokens.open_grant(db, client=new.client, user_id=owner, scopes=scopes,
                                      org_ids=[org.id], resource=base_url + "/api/0/")
            response = tokens.token_response(scopes, access_seconds=3600, refresh=True)
            tokens.save(db, grant.id, response, refresh_seconds=3600)
            refresh.append(str(response["refresh_token"]))
        db.commit()
    engine.dispose()
    basic = base64.b64encode(f"{new.client.client_id}:{new.client_secret}".encode()).decode()
    return {"auth": {"Authorization": f"Basic {basic}"}, "codes": codes, "refresh": refresh}


def run(url: str, count: int) -> dict[str, LoadResult]:
    seed_in(CURRENT, url)
    with served(CURRENT, "scopegate", url) as server, served(CURRENT, "plain") as plain:
        wait_answer(plain, baselines.ITEMS_PATH)
        wait_answer(server, "/.well-known/oauth-authorization-server")
        stocked = stock(url, server.base_url, count)
        codes, refresh = stocked["codes"], stocked["refresh"]

        def exchange(client: httpx.Client, n: int) -> httpx.Response:
            code, verifier = codes[n]  # type: ignore[index]
            return client.post("/oauth/token", data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier})

        def renew(client: httpx.Client, n: int) -> httpx.Response:
            return client.post("/oauth/token", data={
                "grant_type": "refresh_token", "refresh_token": refresh[n]})  # type: ignore[index]

        def bare(client: httpx.Client, n: int) -> httpx.Response:
            return client.get(baselines.ITEMS_PATH)

        headers = stocked["auth"]  # type: ignore[assignment]
        return {
            "bare Starlette GET": burst(bare, CLIENTS, count, base_url=plain.base_url),
            "code exchange": burst(exchange, CLIENTS, count, base_url=server.base_url,
                                   headers=headers),  # type: ignore[arg-type]
            "refresh": burst(renew, CLIENTS, count, base_url=server.base_url,
                             headers=headers),  # type: ignore[arg-type]
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    require_tools()
    started = time.perf_counter()
    print(f"scopegate token endpoint bench: {environment()}")
    print(f"{CLIENTS} concurrent clients, {args.count} requests per mode")
    results = {}
    for label, database in databases("oauth"):
        with database() as url:
            results[label] = run(url, args.count)
    labels = list(results)
    modes = list(results[labels[0]])
    rows = []
    for mode in modes:
        cells = [mode]
        for db in labels:
            result = results[db][mode]
            bare = results[db]["bare Starlette GET"].rate()
            bad = result.completed - result.statuses[200]
            cells.append(f"{result.rate():,.0f}/s ({result.rate() / bare:.2f}× bare)"
                         + (f", {bad} not 200" if bad else ""))
        rows.append(cells)
    print()
    print(table(["mode", *labels], rows))
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
