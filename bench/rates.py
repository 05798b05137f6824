"""Mint and approval rates, and a 256-client mint burst: a baseline revision vs now.

A temporary git worktree of the baseline revision (default ``5b679ea``, main before
issue #7) and the working tree are each served by one uvicorn subprocess (the settings
of ``bench/serving.py``) on a fresh seeded database, SQLite and, when
``SCOPEGATE_BENCH_DATABASE_URL`` is set, PostgreSQL. Against each, with ``wrk`` (the
shared load driver's ``wrk_post``, ``tests/support/load.py``: each request a distinct
``sessionId``), for ``Plan.seconds`` a phase after a short warm-up:

(a) mints: 64 connections ``POST …/agent/token/`` with a user token, mints/s;
(b) approvals: 64 connections ``POST …/agent/approve/`` from one logged-in browser
    session (cookie + ``X-CSRF-Token``), ``{"sessionId": "s<N>", "scopes":
    ["event:write"]}``, approvals/s;
(c) a burst: 256 connections minting: status counts, 5xx, p99 and the longest latency
    (a stall shows up there).

Each phase also reports the server process's CPU time per answer (``/proc``), a figure
steadier than the rate on a shared machine. wrk, not Python clients: 64 httpx threads
cost ~7 ms of CPU per request on 2 cores, more than a mint, so they measured themselves.
Prints the rates and new/old ratios. Usage: ``python bench/rates.py [--baseline REV]
[--current REV] [--quick]``; ``--current REV`` serves that revision instead of the
working tree.
"""

from __future__ import annotations

import argparse
import os
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
from support.load import WrkResult, wrk_post

APPROVE = f"/api/0/organizations/{ORG}/agent/approve/"
CSRF_HEADER = "X-CSRF-Token"
CLIENTS = 64
BURST_CLIENTS = 256
WARMUP_SECONDS = 2.0
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    seconds: float = 20.0


@dataclass(frozen=True)
class Phase:
    """One phase's answers and the server's CPU seconds spent on them."""

    result: WrkResult
    cpu_seconds: float

    @property
    def cpu_ms_per_answer(self) -> float:
        return self.cpu_seconds * 1000 / max(self.result.completed, 1)


def login(server: ServerProcess, email: str, password: str) -> tuple[str, str]:
    """Log in through the form (login CSRF cookie + field); the session's ``Cookie``
    header and its CSRF token from the account page."""
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
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        return cookie, account.group(1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def expect(result: WrkResult, status: int, what: str) -> None:
    """A phase whose requests mostly failed measured nothing: say so loudly."""
    if result.statuses[status] < result.completed // 2 or not result.completed:
        raise SystemExit(f"bench: {what} mostly failed: {dict(result.statuses)} "
                         f"{result.errors[:3]}")


def run_tree(tree: Tree, url: str, plan: Plan) -> dict[str, Phase]:
    tokens = seed_in(tree, url)
    user = bearer(tokens["user"])
    with served(tree, "scopegate", url) as server:
        wait_answer(server, ISSUES, headers=user)
        cookie, csrf = login(server, tokens["email"], tokens["password"])
        browser = {"Cookie": cookie, CSRF_HEADER: csrf}
        mint, approve = server.url(MINT), server.url(APPROVE)

        def phase(target: str, body: str, headers: dict[str, str], connections: int) -> Phase:
            before = cpu_seconds(server.process.pid)
            result = wrk_post(target, body, headers, connections, plan.seconds)
            return Phase(result, cpu_seconds(server.process.pid) - before)

        # Warm-up: connections, caches, the first key ring read; not measured.
        expect(wrk_post(mint, '{"sessionId": "w{n}"}', user, 4, WARMUP_SECONDS), 201,
               "warm-up mints")
        expect(wrk_post(approve, '{"sessionId": "w{n}", "scopes": ["event:write"]}',
                        browser, 4, WARMUP_SECONDS), 201, "warm-up approvals")
        results = {
            "mints": phase(mint, '{"sessionId": "m{n}"}', user, CLIENTS),
            "approvals": phase(approve, '{"sessionId": "s{n}", "scopes": ["event:write"]}',
                               browser, CLIENTS),
            "burst": phase(mint, '{"sessionId": "b{n}"}', user, BURST_CLIENTS),
        }
    expect(results["mints"].result, 201, "mints")
    expect(results["approvals"].result, 201, "approvals")
    return results


def statuses(result: WrkResult) -> str:
    return " ".join(f"{status}×{n}" for status, n in sorted(result.statuses.items()))


def report(label: str, old: dict[str, Phase], new: dict[str, Phase]) -> None:
    rows = []
    for phase in ("mints", "approvals", "burst"):
        for name, measured in (("old", old[phase]), ("new", new[phase])):
            result = measured.result
            rows.append([f"{phase} ({name})", f"{result.rate(201):,.0f}",
                         str(result.completed), statuses(result), str(result.server_errors),
                         str(sum(result.socket_errors.values())),
                         f"{result.p50 * 1000:.0f}", f"{result.p99 * 1000:.0f}",
                         f"{result.max_latency:.2f}", f"{measured.cpu_ms_per_answer:.2f}"])
    print(f"\n{label}")
    print(table(["phase", "ok/s", "answers", "statuses", "5xx", "no answer", "p50 ms",
                 "p99 ms", "max s", "server CPU ms/answer"], rows))
    ratios = [f"{phase} {new[phase].result.rate(201) / max(old[phase].result.rate(201), 1e-9):.2f}x"
              for phase in ("mints", "approvals")]
    cpu = [f"{phase} {old[phase].cpu_ms_per_answer / max(new[phase].cpu_ms_per_answer, 1e-9):.2f}x"
           for phase in ("mints", "approvals")]
    print(f"new/old rate: {', '.join(ratios)} (issue #7 targets: mints >= 2x, approvals >= "
          "1.6x; burst: no 5xx, no stall)")
    print(f"old/new server CPU per answer: {', '.join(cpu)}")


def main(baseline: str, current: str | None, plan: Plan) -> None:
    require_tools()
    started = time.perf_counter()
    print(f"scopegate rates bench: {environment()}")
    print(f"wrk, one thread: mints and approvals over {CLIENTS} connections, the burst over "
          f"{BURST_CLIENTS}; {plan.seconds:.0f} s a phase")
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
    parser.add_argument("--quick", action="store_true", help="5 s a phase instead of 20 s")
    args = parser.parse_args()
    main(args.baseline, args.current, Plan(5.0) if args.quick else Plan())
