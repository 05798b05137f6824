"""Requests/second of scopegate's demo GET against a plain route and a naive JWT check.

Six modes, each app in its own uvicorn subprocess with identical server settings,
measured with ``wrk`` (32 connections, 1 s warm-up, then ~5 s): a plain Starlette
``GET /items`` (25 objects, no auth, no database); the same behind a hand-written PyJWT
HS256 check (``bench/baselines.py``); scopegate's ``GET /api/0/organizations/acme/issues/``
(25 issues) with a user token, an org token, an agent token (minted over HTTP), and with
the route's ``Permission`` dependency overridden. Prints req/s and the ratios issue #7's
targets name. SQLite (a temp file) always; PostgreSQL too when
``SCOPEGATE_BENCH_DATABASE_URL`` is set (a scratch database beside it, dropped after).

Usage: ``python bench/throughput.py [--rounds N] [--tree REV]`` (``make bench-throughput``).
``--tree REV`` measures a git revision (served from a temporary worktree) instead of the
working tree. Servers, seeding and trees: ``bench/serving.py``; load: ``tests/support/load.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # support.*

import httpx

import baselines
from harness import table
from serving import (
    CURRENT,
    ISSUES,
    MINT,
    PAGE,
    RELEASES,
    Tree,
    bearer,
    databases,
    environment,
    require_tools,
    seed_in,
    served,
    worktree,
)
from support.live_server import wait_answer
from support.load import wrk

CONNECTIONS = 32
WARMUP_SECONDS = 1
SECONDS = 5


# --- the throughput bench ----------------------------------------------------------------


def modes_for(tree: Tree, url: str, stack: ExitStack) -> list[tuple[str, str, dict[str, str]]]:
    """(label, URL, headers) per mode, every server started and checked."""
    tokens = seed_in(tree, url)
    plain = stack.enter_context(served(tree, "plain"))
    naive = stack.enter_context(served(tree, "jwt"))
    auth = stack.enter_context(served(tree, "scopegate", url))
    opened = stack.enter_context(served(tree, "overridden", url))
    user = bearer(tokens["user"])
    wait_answer(plain, baselines.ITEMS_PATH)
    wait_answer(naive, baselines.ITEMS_PATH, expect=401)
    jwt_headers = bearer(baselines.jwt_token())
    wait_answer(naive, baselines.ITEMS_PATH, headers=jwt_headers)
    page = wait_answer(auth, ISSUES, headers=user).json()
    if len(page) != PAGE:
        raise SystemExit(f"bench: GET issues returned {len(page)} issues, not {PAGE}")
    wait_answer(auth, ISSUES, expect=401)
    wait_answer(opened, ISSUES, headers=user)
    wait_answer(opened, ISSUES)  # no credential, yet 200: the Permission is overridden
    minted = httpx.post(auth.url(MINT), headers=user, timeout=30,
                        json={"sessionId": "bench", "ttlSeconds": 3600})
    if minted.status_code != 201:
        raise SystemExit(f"bench: agent mint answered {minted.status_code}: {minted.text}")
    agent = bearer(minted.json()["token"])
    wait_answer(auth, ISSUES, headers=agent)
    org = bearer(tokens["org"])
    org_path, org_label = ISSUES, "org token"
    if httpx.get(auth.url(ISSUES), headers=org, timeout=10).status_code != 200:
        org_path, org_label = RELEASES, "org token, GET releases/ (org:ci reads no issues)"
        if len(wait_answer(auth, RELEASES, headers=org).json()) != PAGE:
            raise SystemExit("bench: GET releases did not return a full page")
    return [
        ("plain Starlette", plain.url(baselines.ITEMS_PATH), {}),
        ("PyJWT HS256", naive.url(baselines.ITEMS_PATH), jwt_headers),
        ("user token", auth.url(ISSUES), user),
        (org_label, auth.url(org_path), org),
        ("agent token", auth.url(ISSUES), agent),
        ("Permission overridden", opened.url(ISSUES), user),
    ]


def measure(tree: Tree, url: str, rounds: int) -> dict[str, float]:
    """Median req/s per mode over ``rounds`` rounds that each visit every mode once."""
    samples: dict[str, list[float]] = {}
    with ExitStack() as stack:
        modes = modes_for(tree, url, stack)
        for _ in range(rounds):
            for label, target, headers in modes:
                wrk(target, headers, CONNECTIONS, WARMUP_SECONDS)
                samples.setdefault(label, []).append(wrk(target, headers, CONNECTIONS, SECONDS))
    return {label: statistics.median(values) for label, values in samples.items()}


RATIOS = [  # (name, numerator, denominator, target on SQLite / PostgreSQL)
    ("authenticated / plain", "user token", "plain Starlette", "≥ 0.30 / ≥ 0.15"),
    ("authenticated / PyJWT", "user token", "PyJWT HS256", "≥ 0.45 / ≥ 0.22"),
    ("authenticated / overridden", "user token", "Permission overridden", "≥ 0.90"),
    ("agent / user", "agent token", "user token", "≈ 1.0"),
]


def main(rev: str | None, rounds: int) -> None:
    require_tools()
    started = time.perf_counter()
    print(f"scopegate throughput bench: {environment()}")
    print(f"wrk: {CONNECTIONS} connections, {WARMUP_SECONDS} s warm-up + {SECONDS} s per "
          f"mode, {rounds} round(s), median")
    results: dict[str, dict[str, float]] = {}
    with (worktree(rev) if rev else nullcontext(CURRENT)) as tree:
        print(f"scopegate from: {tree.label}")
        for label, database in databases("throughput"):
            with database() as url:
                results[label] = measure(tree, url, rounds)
    labels = list(results)
    modes = list(results[labels[0]])
    print("\nreq/s (wrk over loopback; client and server share the machine)")
    print(table(["mode", *labels],
                [[mode, *(f"{results[db][mode]:,.0f}" for db in labels)] for mode in modes]))
    print()
    print(table(["ratio", *labels, "issue #7 target (SQLite / PostgreSQL)"], [
        [name, *(f"{results[db][a] / results[db][b]:.2f}" for db in labels), target]
        for name, a, b, target in RATIOS
    ]))
    print(f"\nload average now {os.getloadavg()[0]:.2f}; total "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", metavar="REV", help="measure this git revision instead")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per mode (median)")
    args = parser.parse_args()
    main(args.tree, max(1, args.rounds))
