"""Mint and approval rates, and a 256-client mint burst: a baseline revision vs now.

A temporary git worktree of the baseline revision (default ``5b679ea``, main before
issue #7) and the working tree are each served by one uvicorn subprocess (the settings
of ``bench/serving.py``) on a fresh seeded database, SQLite and, when
``SCOPEGATE_BENCH_DATABASE_URL`` is set, PostgreSQL. Against each, with the shared load
driver (``tests/support/load.py``, one keep-alive httpx client per thread):

(a) mints: 64 concurrent clients, 2,000 ``POST …/agent/token/`` with a user token
    (a distinct ``sessionId`` each), mints/s;
(b) approvals: 64 concurrent clients, 2,000 ``POST …/agent/approve/`` from one logged-in
    browser session (cookie + ``X-CSRF-Token``), ``{"sessionId": "s<N>",
    "scopes": ["event:write"]}``, approvals/s;
(c) a burst: 256 concurrent clients, 1,024 mints: status counts, 5xx, p99 and the
    longest latency (a stall shows up there).

Each phase also stops taking new requests after 60 s. Prints the rates and new/old
ratios. Usage: ``python bench/rates.py [--baseline REV] [--current REV] [--quick]``;
``--current REV`` serves that revision instead of the working tree.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # support.*

import httpx

from harness import table
from serving import (
    CURRENT,
    ISSUES,
    MINT,
    ORG,
    Tree,
    bearer,
    databases,
    environment,
    require_tools,
    seed_in,
    served,
    worktree,
)
from support.live_server import ServerProcess, wait_answer
from support.load import LoadResult, Send, burst

APPROVE = f"/api/0/organizations/{ORG}/agent/approve/"
CSRF_HEADER = "X-CSRF-Token"
CLIENTS = 64
BURST_CLIENTS = 256
PHASE_SECONDS = 60.0
WARMUP = 20
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Plan:
    mints: int = 2_000
    approvals: int = 2_000
    burst: int = 1_024


def login(server: ServerProcess, email: str, password: str) -> tuple[httpx.Cookies, str]:
    """Log in through the form (login CSRF cookie + field); the session cookies and the
    session's CSRF token from the account page."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        form = _CSRF_INPUT.search(client.get("/login").text)
        if form is None:
            raise SystemExit("bench: the login form has no csrf_token field")
        answer = client.post("/login", follow_redirects=False, data={
            "email": email, "password": password, "csrf_token": form.group(1)})
        if answer.status_code != 303:
            raise SystemExit(f"bench: login answered {answer.status_code}")
        account = _CSRF_INPUT.search(client.get("/account").text)
        if account is None:
            raise SystemExit("bench: the account page has no csrf_token field")
        return httpx.Cookies(client.cookies), account.group(1)


def expect(result: LoadResult, status: int, what: str) -> None:
    """A phase whose requests mostly failed measured nothing: say so loudly."""
    if result.statuses[status] < result.completed // 2:
        raise SystemExit(f"bench: {what} mostly failed: {dict(result.statuses)} "
                         f"{result.errors[:3]}")


def run_tree(tree: Tree, url: str, plan: Plan) -> dict[str, LoadResult]:
    tokens = seed_in(tree, url)
    user = bearer(tokens["user"])
    with served(tree, "scopegate", url) as server:
        wait_answer(server, ISSUES, headers=user)
        cookies, csrf = login(server, tokens["email"], tokens["password"])
        browser = {CSRF_HEADER: csrf}

        def mint(prefix: str) -> Send:
            return lambda client, n: client.post(MINT, json={"sessionId": f"{prefix}{n}"})

        def approve(client: httpx.Client, n: int) -> httpx.Response:
            return client.post(APPROVE, json={"sessionId": f"s{n}", "scopes": ["event:write"]})

        common = {"base_url": server.base_url, "seconds": PHASE_SECONDS}
        # Warm-up: connections, caches, the first key ring read; not measured.
        expect(burst(mint("w"), 4, WARMUP, headers=user, **common), 201, "warm-up mints")
        expect(burst(lambda c, n: approve(c, plan.approvals + n), 4, WARMUP, headers=browser,
                     cookies=cookies, **common), 201, "warm-up approvals")
        results = {
            "mints": burst(mint("m"), CLIENTS, plan.mints, headers=user, **common),
            "approvals": burst(approve, CLIENTS, plan.approvals, headers=browser,
                               cookies=cookies, **common),
            "burst": burst(mint("b"), BURST_CLIENTS, plan.burst, headers=user, **common),
        }
    expect(results["mints"], 201, "mints")
    expect(results["approvals"], 201, "approvals")
    return results


def statuses(result: LoadResult) -> str:
    return " ".join(f"{status}×{n}" for status, n in sorted(result.statuses.items()))


def report(label: str, old: dict[str, LoadResult], new: dict[str, LoadResult]) -> None:
    rows = []
    for phase, status in (("mints", 201), ("approvals", 201), ("burst", 201)):
        for name, result in (("old", old[phase]), ("new", new[phase])):
            rows.append([f"{phase} ({name})", f"{result.rate(status):,.0f}",
                         str(result.completed), statuses(result), str(result.server_errors),
                         f"{result.p50 * 1000:.0f}", f"{result.p99 * 1000:.0f}",
                         f"{result.max_latency:.2f}"])
    print(f"\n{label}")
    print(table(["phase", "ok/s", "sent", "statuses", "5xx", "p50 ms", "p99 ms", "max s"],
                rows))
    ratios = [f"{phase} {new[phase].rate(201) / max(old[phase].rate(201), 1e-9):.2f}x"
              for phase in ("mints", "approvals")]
    print(f"new/old: {', '.join(ratios)} (issue #7 targets: mints >= 2x, approvals >= 1.6x; "
          "burst: no 5xx, no stall)")


def main(baseline: str, current: str | None, plan: Plan) -> None:
    require_tools()
    started = time.perf_counter()
    print(f"scopegate rates bench: {environment()}")
    print(f"mints {plan.mints} x {CLIENTS} clients, approvals {plan.approvals} x {CLIENTS}, "
          f"burst {plan.burst} mints x {BURST_CLIENTS} clients; "
          f"each phase <= {PHASE_SECONDS:.0f} s")
    with ExitStack() as stack:
        old = stack.enter_context(worktree(baseline))
        new = stack.enter_context(worktree(current) if current else nullcontext(CURRENT))
        print(f"old: {old.label}; new: {new.label}")
        for label, database in databases("rates"):
            measured = {}
            for name, tree in (("old", old), ("new", new)):
                with database() as url:
                    measured[name] = run_tree(tree, url, plan)
            report(label, measured["old"], measured["new"])
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="5b679ea", metavar="REV",
                        help="the revision to compare against (default: 5b679ea)")
    parser.add_argument("--current", metavar="REV", help="serve REV instead of the working tree")
    parser.add_argument("--quick", action="store_true", help="a quarter of the requests")
    args = parser.parse_args()
    main(args.baseline, args.current, Plan(500, 500, 512) if args.quick else Plan())
