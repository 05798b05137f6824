"""What recording scope usage costs on the request path: recording on vs off, same run.

(a) In process: ``Gate.check`` for a user token on ``GET …/issues/``, answered from
    memory, with the endpoint named (the call is counted in the buffer) and without
    (nothing counted: what a gate without a recorder does), in alternating blocks;
    and ``ScopeUsageRecorder.record`` alone. Median and p95 in µs.
(b) Over HTTP: two uvicorn subprocesses on the same seeded database, identical but for
    ``SCOPEGATE_SCOPE_USAGE_ENABLED`` (true / false), each ``GET`` measured with ``wrk``
    (32 connections, 1 s warm-up then 5 s) in rounds that alternate which server goes
    first: the organization's detail (a small body, where the gate is most of the work)
    and the issues list (25 issues). Printed: req/s per server (median of the rounds) and
    on/off ratios; then what the recording server wrote (its upkeep thread flushes every
    5 s, and once more when it stops), as proof that it really counted.

SQLite (a temp file) always; PostgreSQL too when ``SCOPEGATE_BENCH_DATABASE_URL`` names
an admin URL (a scratch database beside it, dropped after). Loopback only; every phase
is bounded by count and time. Usage: ``python bench/scope_usage.py [--rounds N]``
(``make bench-usage``). Servers and seeding: ``bench/serving.py``; load:
``tests/support/load.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # support.*

from harness import HOST, Timing, settings_for, summarize, table
from scopegate.core.access import Principal
from scopegate.core.token_kinds import TokenKind
from scopegate.runtime.process import Runtime
from scopegate.services.gate import Presented, Verdict
from scopegate.services.scope_usage import ScopeUsageRecorder
from scopegate.web.api import issues
from serving import (
    CURRENT,
    ISSUES,
    ISSUES_ROUTE,
    ORG,
    bearer,
    child,
    child_env,
    databases,
    environment,
    require_tools,
    seed_in,
)
from support.live_server import ServerProcess, free_port, running, spawn, wait_answer
from support.load import wrk

CONNECTIONS = 32
WARMUP_SECONDS = 1
SECONDS = 5
ITERATIONS = 20_000
BLOCKS = 5
BLOCK_SECONDS_MAX = 2.0
ENDPOINTS = [  # (label, path)
    ("GET organization", f"/api/0/organizations/{ORG}/"),
    ("GET issues (25)", ISSUES),
]
SETTING = "SCOPEGATE_SCOPE_USAGE_ENABLED"


# --- (a) in process ----------------------------------------------------------------------


def timed_blocks(cases: dict[str, Callable[[], object]]) -> dict[str, Timing]:
    """Each case ``ITERATIONS`` times, in ``BLOCKS`` blocks that alternate between the
    cases (so drift hits all alike); each block also stops after a few seconds."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    per_block = ITERATIONS // BLOCKS
    for block in range(BLOCKS):
        order = list(cases.items())
        for name, call in order if block % 2 == 0 else reversed(order):
            deadline = time.monotonic() + BLOCK_SECONDS_MAX
            for _ in range(per_block):
                start = time.perf_counter_ns()
                call()
                samples[name].append((time.perf_counter_ns() - start) / 1000)
                if time.monotonic() > deadline:
                    break
    return {name: summarize(values) for name, values in samples.items()}


def in_process(url: str, token: str) -> dict[str, Timing]:
    runtime = Runtime.build(settings_for(url, f"http://{HOST}"))
    try:
        gate = runtime.gate
        presented = Presented(bearer=token)

        def counted(conn=None) -> object:
            return gate.check(issues.ISSUES, "GET", presented, ORG, conn, Verdict(),
                              endpoint=ISSUES_ROUTE)

        def uncounted(conn=None) -> object:
            return gate.check(issues.ISSUES, "GET", presented, ORG, conn, Verdict())

        runtime.confirm_changes()
        access = gate.run_with_connection(counted).access  # the caches warm
        recorder = ScopeUsageRecorder()
        principal: Principal = access.principal
        assert principal.kind is TokenKind.USER
        sufficient = issues.ISSUES.decide("GET", access.scopes).sufficient

        def record() -> None:
            recorder.record(principal, 1, "GET", ISSUES_ROUTE, sufficient, access.scopes)

        timings = timed_blocks({"Gate.check, counted": counted,
                                "Gate.check, not counted": uncounted,
                                "ScopeUsageRecorder.record alone": record})
        if runtime.scope_usage is None or runtime.scope_usage.pending != 1:
            raise SystemExit("bench: the counted decisions were not counted")
        return timings
    finally:
        runtime.close()


# --- (b) over HTTP -----------------------------------------------------------------------


@contextmanager
def served(url: str, enabled: bool) -> Iterator[ServerProcess]:
    """scopegate in its own uvicorn subprocess, recording on or off (bench/serving.py's
    server, with the one setting in its environment)."""
    port = free_port()
    env = {**child_env(CURRENT), SETTING: "true" if enabled else "false"}
    label = f"scopegate, recording {'on' if enabled else 'off'}"
    server = spawn(label, child(CURRENT, "serve", "scopegate", url, str(port)), port=port,
                   env=env)
    with running(server):
        yield server


def over_http(url: str, token: str, rounds: int) -> dict[tuple[str, bool], float]:
    """Median req/s per (endpoint, recording on?) over ``rounds`` alternating rounds."""
    headers = bearer(token)
    samples: dict[tuple[str, bool], list[float]] = {}
    with ExitStack() as stack:
        servers = {enabled: stack.enter_context(served(url, enabled))
                   for enabled in (True, False)}
        for server in servers.values():
            for _, path in ENDPOINTS:
                wait_answer(server, path, headers=headers)
        for round_number in range(rounds):
            order = [True, False] if round_number % 2 == 0 else [False, True]
            for label, path in ENDPOINTS:
                for enabled in order:
                    target = servers[enabled].url(path)
                    wrk(target, headers, CONNECTIONS, WARMUP_SECONDS)
                    samples.setdefault((label, enabled), []).append(
                        wrk(target, headers, CONNECTIONS, SECONDS))
    return {key: statistics.median(values) for key, values in samples.items()}


def written(url: str) -> tuple[int, int]:
    """(rows, calls) in ``scope_usage``: what the recording server wrote."""
    from sqlalchemy import func, select

    from scopegate.store.db import make_engine
    from scopegate.store.integration_models import ScopeUsage

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows, calls = conn.execute(
                select(func.count(), func.coalesce(func.sum(ScopeUsage.calls), 0))).one()
    finally:
        engine.dispose()
    return int(rows), int(calls)


def main(rounds: int) -> None:
    require_tools()
    started = time.perf_counter()
    print(f"scope usage recording bench: {environment()}")
    print(f"wrk: {CONNECTIONS} connections, {WARMUP_SECONDS} s warm-up + {SECONDS} s per "
          f"server and endpoint, {rounds} round(s), median")
    micro_rows: list[list[str]] = []
    http_rows: list[list[str]] = []
    for label, database in databases("usage"):
        with database() as url:
            tokens = seed_in(CURRENT, url)
            for name, timing in in_process(url, tokens["user"]).items():
                micro_rows.append([f"{label}: {name}", f"{timing.median_us:.2f}",
                                   f"{timing.p95_us:.2f}"])
            rates = over_http(url, tokens["user"], rounds)
            rows, calls = written(url)
            for endpoint, _ in ENDPOINTS:
                on, off = rates[(endpoint, True)], rates[(endpoint, False)]
                http_rows.append([f"{label}: {endpoint}", f"{on:,.0f}", f"{off:,.0f}",
                                  f"{on / off:.3f}"])
            http_rows.append([f"{label}: written by the recording server",
                              f"{calls:,} calls", f"{rows} rows", ""])
    print("\n(a) in process: a warm decision, median of "
          f"{ITERATIONS:,} in {BLOCKS} alternating blocks")
    print(table(["case", "median µs", "p95 µs"], micro_rows))
    print("\n(b) req/s over loopback (wrk and the server share the machine)")
    print(table(["user token", "recording on", "recording off", "on / off"], http_rows))
    print(f"\nload average now {os.getloadavg()[0]:.2f}; total "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server (median)")
    args = parser.parse_args()
    main(max(1, args.rounds))
