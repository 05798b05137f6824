"""What agent capability tokens cost. Prints figures and ratios, asserts no timing.

1. In process, per request: verifying an agent token through
   ``AgentTokenAuthenticator.__call__`` (signature, claims, deny list) cold (a distinct
   freshly minted token each time, so the signature is checked every time) and warm
   (the same token again: cached claims), next to ``runtime.chain.authenticate`` for a
   user token (a database lookup). Median and p95 in microseconds.
2. Over loopback HTTP: mints per second (``POST /api/0/organizations/{org}/agent/token/``
   with a user token, taking the write-grant path) against PostgreSQL with 10 thousand
   and with 1 million rows in ``write_grants`` (two scratch databases, one server each,
   measured in alternating rounds so background load falls on both alike), and the
   ratio between the two; the same for ``agent_tokens.mint`` + commit in process. The
   grant lookup is by the ``(org_id, user_id, session_id)`` unique index, so the ratio
   should be near 1; the plan of that lookup is printed at each size.
3. The environment: Python and library versions, CPU count, PostgreSQL version.

PostgreSQL only: ``SCOPEGATE_BENCH_DATABASE_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) is used as an admin connection
to create the scratch databases (``scopegate_bench_agent_<pid>_<rows>``), dropped at the
end. ``--quick`` uses smaller sizes (2 thousand and 100 thousand rows).
Usage: ``python bench/agent.py [--quick]`` (or ``make bench-agent``).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import metadata

import httpx
from sqlalchemy import Engine, create_engine, event, text

from harness import HOST, Timing, scratch_database, settings_for, summarize, table
from scopegate.core import scopes as registry
from scopegate.runtime.prepare import prepare
from scopegate.runtime.process import Runtime
from scopegate.services import agent_tokens, audit, credentials, directory, grants
from scopegate.services.access import OrgAccess
from scopegate.services.gate import Verdict
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.web.app import create_app
from support.load import burst

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ORG = "acme"
EXTRA_ORGS = ("initech", "umbrella", "hooli")
OWNER_EMAIL = "owner@acme.test"
SESSION = "bench-session"
MINT_PATH = "/api/0/organizations/{org}/agent/token/"
#: The bench user's token: reads plus the write its grant approves (and one it does not).
USER_TOKEN_SCOPES = frozenset({
    registry.ORG_READ, registry.PROJECT_READ, registry.EVENT_READ,
    registry.EVENT_WRITE, registry.PROJECT_WRITE,
})
#: What the bench session's write grant approves; a mint that carries it took the grant path.
GRANTED = registry.EVENT_WRITE
WARMUP = 200
HTTP_CLIENTS = 4
HTTP_WARMUP = 100
HTTP_ROUNDS = 3
#: In-process timings run in this many alternating blocks per case.
BLOCKS = 5
HTTP_SECONDS_MAX = 20.0
LOAD_CHUNK = 100_000


@dataclass(frozen=True)
class Plan:
    """Sizes for one run (``--quick`` shrinks them)."""

    iterations: int
    mint_iterations: int
    http_requests: int
    sizes: tuple[int, int]
    filler_users: int


FULL = Plan(iterations=5_000, mint_iterations=1_200, http_requests=500,
            sizes=(10_000, 1_000_000), filler_users=1_000)
QUICK = Plan(iterations=1_000, mint_iterations=300, http_requests=150,
             sizes=(2_000, 100_000), filler_users=100)


# --- environment ---------------------------------------------------------------------------


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            server = conn.execute(text("SHOW server_version")).scalar_one()
            buffers = conn.execute(text("SHOW shared_buffers")).scalar_one()
    finally:
        engine.dispose()
    libs = ", ".join(
        f"{name} {version(dist)}"
        for name, dist in (
            ("SQLAlchemy", "sqlalchemy"), ("PyJWT", "pyjwt"), ("cryptography", "cryptography"),
            ("psycopg", "psycopg"), ("FastAPI", "fastapi"), ("uvicorn", "uvicorn"),
            ("httpx", "httpx"),
        )
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.system()} {platform.release()} {platform.machine()}",
        libs,
        f"CPUs: {os.cpu_count()}; load average {load}; "
        f"PostgreSQL {server} (shared_buffers {buffers})",
    ]


def round_trips(url: str, count: int = 300) -> str:
    """Baselines for reading the figures: a bare SELECT 1 and a one-row INSERT + COMMIT."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE bench_commit_probe (id serial PRIMARY KEY)"))
            conn.commit()
            select_us, commit_us = [], []
            for _ in range(count):
                start = time.perf_counter_ns()
                conn.execute(text("SELECT 1"))
                select_us.append((time.perf_counter_ns() - start) / 1000)
                conn.commit()
            for _ in range(count):
                start = time.perf_counter_ns()
                conn.execute(text("INSERT INTO bench_commit_probe DEFAULT VALUES"))
                conn.commit()
                commit_us.append((time.perf_counter_ns() - start) / 1000)
            conn.execute(text("DROP TABLE bench_commit_probe"))
            conn.commit()
    finally:
        engine.dispose()
    return (
        f"PostgreSQL round trips (median of {count}): SELECT 1 "
        f"{statistics.median(select_us):.0f} µs; INSERT + COMMIT "
        f"{statistics.median(commit_us):.0f} µs"
    )


# --- database ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    user_token: str
    user_id: int
    org_ids: list[int]
    user_ids: list[int]  # the bench user first, then the filler users


def seed(url: str, filler_users: int) -> Seeded:
    """Prepare; the bench owner, its orgs, its user token and its approved grant; fillers."""
    prepare(settings_for(url))
    engine = make_engine(url)
    with make_sessionmaker(engine)() as db:
        owner = directory.create_user(db, OWNER_EMAIL, "bench-password", name="bench owner")
        org = directory.create_org(db, ORG, owner, name="Acme")
        extra = [directory.create_org(db, slug, owner) for slug in EXTRA_ORGS]
        token = credentials.create_user_token(db, owner, USER_TOKEN_SCOPES, name="bench")
        approval = grants.approve(
            db, org=org, approver_id=owner.id, session_id=SESSION,
            requested=frozenset({GRANTED}), lifetime=grants.lifetime_seconds("4h", org),
            agent="bench",
        )
        if GRANTED not in approval.scopes:
            raise SystemExit("bench setup error: the grant was not stored")
        # Users the bulk grants reference; the password hash is a placeholder (no login).
        fillers = db.execute(
            text(
                "INSERT INTO users (email, name, password_hash, is_active, created_at) "
                "SELECT 'filler' || n || '@bench.test', '', '!', true, timezone('utc', now()) "
                "FROM generate_series(1, :count) AS n RETURNING id"
            ),
            {"count": filler_users},
        ).scalars().all()
        db.commit()
        seeded = Seeded(
            user_token=token.token,
            user_id=owner.id,
            org_ids=[org.id, *(o.id for o in extra)],
            user_ids=[owner.id, *fillers],
        )
    engine.dispose()
    return seeded


#: Row ``n`` of the bulk load: spread over the orgs and users (the bench user among them),
#: each with its own session; one in ten expired; a few scope sets.
BULK_INSERT = text(
    "INSERT INTO write_grants "
    "(org_id, user_id, session_id, agent, scopes, created_at, updated_at, expires_at) "
    "SELECT (CAST(:orgs AS integer[]))[CAST(1 + n % :norgs AS integer)], "
    "       (CAST(:users AS integer[]))[CAST(1 + (n / :norgs) % :nusers AS integer)], "
    "       'sess-' || n, 'bulk-agent', "
    "       (ARRAY['event:write', 'project:write event:write', 'project:releases'])"
    "           [CAST(1 + n % 3 AS integer)], "
    "       timezone('utc', now()) - interval '1 hour', "
    "       timezone('utc', now()) - interval '1 hour', "
    "       CASE WHEN n % 10 = 0 THEN timezone('utc', now()) - interval '5 minutes' "
    "            ELSE timezone('utc', now()) + interval '4 hours' END "
    "FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS n"
)


def count_grants(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM write_grants")).scalar_one())


def grow_grants(engine: Engine, seeded: Seeded, target: int) -> None:
    """Bulk-load ``write_grants`` up to ``target`` rows (server-side generate_series, in
    chunks with progress), then VACUUM ANALYZE and CHECKPOINT so the measurement after it
    meets fresh statistics and no pending write-back."""
    have = count_grants(engine)
    if have >= target:
        return
    total = target - have
    params = {
        "orgs": seeded.org_ids, "norgs": len(seeded.org_ids),
        "users": seeded.user_ids, "nusers": len(seeded.user_ids),
    }
    print(f"loading {total:,} write_grants rows ({have:,} -> {target:,}) ...", flush=True)
    started = time.perf_counter()
    # Bulk row numbers continue from the previous load: session ids stay unique.
    lo = have
    while lo < target:
        hi = min(lo + LOAD_CHUNK, target) - 1
        with engine.begin() as conn:
            conn.execute(BULK_INSERT, {**params, "lo": lo, "hi": hi})
        lo = hi + 1
        done = lo - have
        elapsed = time.perf_counter() - started
        print(
            f"  {done:>9,} / {total:,} rows  {elapsed:6.1f} s  ({done / elapsed:,.0f} rows/s)",
            flush=True,
        )
    maintenance_started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE write_grants"))
        conn.execute(text("CHECKPOINT"))
    with engine.connect() as conn:
        own = conn.execute(
            text("SELECT count(*) FROM write_grants WHERE user_id = :user"),
            {"user": seeded.user_id},
        ).scalar_one()
    print(
        f"  loaded in {time.perf_counter() - started:.1f} s "
        f"(VACUUM ANALYZE + CHECKPOINT {time.perf_counter() - maintenance_started:.1f} s); "
        f"table now {count_grants(engine):,} rows over {len(seeded.user_ids):,} users and "
        f"{len(seeded.org_ids)} orgs, {own:,} of them the bench user's",
        flush=True,
    )


# --- timing helpers --------------------------------------------------------------------------


def sample_calls(rt: Runtime, calls: list[Callable[..., object]], *, hold_connection: bool,
                 discard: int = WARMUP) -> list[float]:
    """Time each call (µs) on a fresh session, as a request gets one; the first
    ``discard`` are warm-up. With ``hold_connection`` the session's connection is
    checked out before the clock starts."""
    samples: list[float] = []
    for i, call in enumerate(calls):
        db = rt.factory()
        try:
            if hold_connection:
                db.connection()
            start = time.perf_counter_ns()
            call(db)
            elapsed = time.perf_counter_ns() - start
            db.commit()
        finally:
            db.close()
        if i >= discard:
            samples.append(elapsed / 1000)
    return samples


@dataclass(frozen=True)
class Case:
    name: str
    #: ``WARMUP`` warm-up calls, then the timed ones.
    calls: list[Callable[..., object]]
    hold_connection: bool = False


def run_cases(rt: Runtime, cases: list[Case]) -> list[tuple[str, Timing, float]]:
    """Warm every case up, then time them in ``BLOCKS`` rounds that alternate between the
    cases, so background load drifting during the run falls on all of them alike. Also
    counts the SQL statements each case executes (mean per timed call; connection
    pre-pings are not statements)."""
    for case in cases:
        sample_calls(rt, case.calls[:WARMUP], hold_connection=case.hold_connection)
    samples: dict[str, list[float]] = {case.name: [] for case in cases}
    statements = dict.fromkeys(samples, 0)
    current = [""]

    def tally(*_args: object) -> None:
        statements[current[0]] += 1

    event.listen(rt.engine, "before_cursor_execute", tally)
    try:
        for block in range(BLOCKS):
            for case in cases:
                timed = case.calls[WARMUP:]
                size = len(timed) // BLOCKS
                current[0] = case.name
                samples[case.name] += sample_calls(
                    rt, timed[block * size:(block + 1) * size],
                    hold_connection=case.hold_connection, discard=0,
                )
    finally:
        event.remove(rt.engine, "before_cursor_execute", tally)
    return [
        (case.name, summarize(samples[case.name]),
         statements[case.name] / len(samples[case.name]))
        for case in cases
    ]


def bench_access(rt: Runtime, user_token: str) -> OrgAccess:
    gate = rt.gate
    return gate.run_with_connection(lambda conn: gate.org_access(
        gate.chain.authenticate(user_token, conn), ORG, conn, Verdict()))


def mint_tokens(rt: Runtime, oa: OrgAccess, count: int, session_of: Callable[[int], str]
                ) -> list[str]:
    """``count`` freshly minted tokens (their audit events are never written)."""
    tokens = []
    with rt.factory() as db:
        for i in range(count):
            tokens.append(
                agent_tokens.mint(
                    db, settings=rt.settings, keys=rt.keys, org=oa.org, access=oa.access,
                    session_id=session_of(i), requested=None, ttl_seconds=None, agent="bench",
                ).token
            )
        db.rollback()
    return tokens


# --- 1. verification, in process ---------------------------------------------------------------


COLD = "agent authenticate, cold: signature + claims + deny list (cached)"
WARM = "agent authenticate, warm: cached claims + deny list (cached)"
USER_FRESH = "user chain.authenticate, fresh session (pool checkout)"
USER_HELD = "user chain.authenticate, connection already checked out"


def verification(rt: Runtime, seeded: Seeded, iterations: int
                 ) -> list[tuple[str, Timing, float]]:
    authenticator = rt.agent_tokens
    oa = bench_access(rt, seeded.user_token)
    n = WARMUP + iterations

    def each(tokens: list[str], fn: Callable[[object, str], object]) -> list[Callable]:
        return [lambda db, t=t: fn(db, t) for t in tokens]

    def verify_only(_db: object, token: str) -> object:
        return authenticator.verify(token)

    def agent(db: object, token: str) -> object:
        return authenticator.authenticate(token, db.connection())  # type: ignore[attr-defined]

    def chain(db: object, token: str) -> object:
        return rt.gate.chain.authenticate(token, db.connection())  # type: ignore[attr-defined]

    cold = mint_tokens(rt, oa, n, lambda _i: SESSION)
    cold_miss = mint_tokens(rt, oa, n, lambda i: f"cold-{i}")
    cold_verify = mint_tokens(rt, oa, n, lambda _i: SESSION)
    warm = mint_tokens(rt, oa, 1, lambda _i: SESSION) * n
    # Cache its claims and its deny-list answers.
    rt.gate.run_with_connection(lambda conn: authenticator.authenticate(warm[0], conn))
    user = [seeded.user_token] * n
    return run_cases(rt, [
        Case(COLD, each(cold, agent)),
        Case("agent authenticate, cold, deny-list miss (kv read, own session)",
             each(cold_miss, agent)),
        Case(WARM, each(warm, agent)),
        Case("agent verify() only, cold (no deny list)", each(cold_verify, verify_only)),
        Case("agent verify() only, warm (no deny list)", each(warm, verify_only)),
        Case(USER_FRESH, each(user, chain)),
        Case(USER_HELD, each(user, chain), hold_connection=True),
    ])


# --- 2. minting --------------------------------------------------------------------------------


def mint_call(rt: Runtime, seeded: Seeded, carried: list[int]) -> Callable[[object], None]:
    """One in-process mint as the endpoint does it, committed: grant lookup, signature,
    audit INSERT. ``carried[0]`` counts mints that carried the granted scope."""
    oa = bench_access(rt, seeded.user_token)

    def mint(db: object) -> None:
        minted = agent_tokens.mint(
            db, settings=rt.settings, keys=rt.keys, org=oa.org,  # type: ignore[arg-type]
            access=oa.access, session_id=SESSION, requested=None, ttl_seconds=None,
            agent="bench",
        )
        audit.add(db, minted.event)  # type: ignore[arg-type]
        db.commit()  # type: ignore[attr-defined]
        carried[0] += GRANTED in minted.claims.scopes

    return mint


def grant_lookup_plan(rt: Runtime, seeded: Seeded) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the exact statement ``live_grant`` runs."""
    captured: list[tuple[str, object]] = []

    def grab(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if "FROM write_grants" in statement and not captured:
            captured.append((statement, parameters))

    event.listen(rt.engine, "before_cursor_execute", grab)
    try:
        with rt.factory() as db:
            agent_tokens.live_grant(db, seeded.org_ids[0], seeded.user_id, SESSION)
    finally:
        event.remove(rt.engine, "before_cursor_execute", grab)
    statement, parameters = captured[0]
    with rt.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters  # type: ignore[arg-type]
        ).scalars().all()
    return [str(row) for row in rows]


def serve(url: str) -> None:
    """Subprocess entry: serve the app on a free loopback port, printed on stdout."""
    import uvicorn

    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only
    # when the listening socket says it is TCP, and without it Nagle + delayed ACK add
    # ~40 ms to every keep-alive request. Set on the listener too (inherited on Linux).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    app = create_app(settings_for(url, f"http://{HOST}:{port}"))
    print(port, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


@contextmanager
def server(url: str) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            raise SystemExit("bench server failed to start")
        yield f"http://{HOST}:{line}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def check_mint(http: httpx.Client) -> None:
    """One mint: 201 and carrying the granted write scope (the grant path was taken)."""
    response = http.post(MINT_PATH.format(org=ORG), json={"sessionId": SESSION})
    if response.status_code != 201:
        raise SystemExit(f"bench setup error: mint answered {response.status_code}")
    if GRANTED not in response.json()["scopes"]:
        raise SystemExit("bench setup error: the mint did not take the grant path")


def wait_ready(base_url: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=base_url, headers=headers, timeout=5) as http:
        while True:
            try:
                check_mint(http)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench server at {base_url} did not answer") from None
                time.sleep(0.05)


@dataclass(frozen=True)
class Throughput:
    rate: float
    completed: int
    errors: int
    seconds: float


def drive(base_url: str, headers: dict[str, str], requests: int) -> Throughput:
    """``requests`` mints from ``HTTP_CLIENTS`` keep-alive threads, bounded in time too
    (``tests/support/load.py``, the one load driver of tests and benches)."""
    path = MINT_PATH.format(org=ORG)
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as http:
        check_mint(http)
    result = burst(lambda http, _n: http.post(path, json={"sessionId": SESSION}),
                   HTTP_CLIENTS, requests, base_url=base_url, headers=headers, timeout=10,
                   seconds=HTTP_SECONDS_MAX)
    done = result.statuses[201]
    return Throughput(rate=done / result.wall_seconds, completed=done,
                      errors=result.completed - done, seconds=result.wall_seconds)


# --- report ------------------------------------------------------------------------------------


@dataclass
class Target:
    """One scratch database at one ``write_grants`` size, its runtime and its server."""

    rows: int
    url: str
    seeded: Seeded
    rt: Runtime
    base_url: str = ""
    rounds: list[Throughput] = field(default_factory=list)
    mint_samples: list[float] = field(default_factory=list)
    carried: list[int] = field(default_factory=lambda: [0])
    plan: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.rounds)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.seeded.user_token}"}


def measure_mints(targets: list[Target], plan: Plan) -> None:
    """Rounds alternate between the sizes (small, large, small, large, ...), so drifting
    background load falls on both alike; the same for the in-process mints, in blocks."""
    for target in targets:
        with httpx.Client(base_url=target.base_url, headers=target.headers, timeout=10) as warm:
            for _ in range(HTTP_WARMUP):
                warm.post(MINT_PATH.format(org=ORG), json={"sessionId": SESSION})
    for round_ in range(HTTP_ROUNDS):
        for target in targets:
            result = drive(target.base_url, target.headers, plan.http_requests)
            target.rounds.append(result)
            print(f"  round {round_ + 1}/{HTTP_ROUNDS} at {target.rows:>9,} rows: "
                  f"{result.rate:6.0f} mint/s ({result.completed} ok, {result.errors} errors, "
                  f"{result.seconds:.1f} s)", flush=True)
    calls = {id(t): mint_call(t.rt, t.seeded, t.carried) for t in targets}
    for target in targets:  # warm-up, discarded
        sample_calls(target.rt, [calls[id(target)]] * WARMUP, hold_connection=False)
    block = max(1, plan.mint_iterations // HTTP_ROUNDS)
    for _ in range(HTTP_ROUNDS):
        for target in targets:
            target.mint_samples += sample_calls(
                target.rt, [calls[id(target)]] * block, hold_connection=False, discard=0
            )
    for target in targets:
        target.plan = grant_lookup_plan(target.rt, target.seeded)


def run(admin_url: str, plan: Plan) -> None:
    started = time.perf_counter()
    with ExitStack() as stack:
        targets = []
        for rows in plan.sizes:
            url = stack.enter_context(scratch_database(admin_url, f"scopegate_bench_agent_{rows}"))
            seeded = seed(url, plan.filler_users)
            rt = Runtime.build(settings_for(url))
            rt.start()
            stack.callback(rt.stop)
            targets.append(Target(rows, url, seeded, rt))
        small = targets[0]
        print("  " + round_trips(small.url))
        print(f"\nverifying in process ({plan.iterations:,} iterations each) ...", flush=True)
        verified = verification(small.rt, small.seeded, plan.iterations)
        for target in targets:
            grow_grants(target.rt.engine, target.seeded, target.rows)
        for target in targets:
            target.base_url = stack.enter_context(server(target.url))
            wait_ready(target.base_url, target.headers)
        print(f"\nminting over HTTP, {HTTP_ROUNDS} alternating rounds per size ...", flush=True)
        measure_mints(targets, plan)
    report(verified, targets, plan)
    print("\nload average at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"total {time.perf_counter() - started:.1f} s")


def report(verified: list[tuple[str, Timing, float]], targets: list[Target], plan: Plan
           ) -> None:
    print(f"\n1. Verification per request, in process (fresh Session per call, {BLOCKS} "
          f"alternating blocks per path; µs)")
    print(table(
        ["path", "median", "p95", "n", "SQL/call"],
        [[name, f"{t.median_us:.1f}", f"{t.p95_us:.1f}", str(t.iterations), f"{stmts:.3f}"]
         for name, t, stmts in verified],
    ))
    by_name = {name: timing for name, timing, _stmts in verified}
    cold, warm = by_name[COLD], by_name[WARM]
    for label, user in (("fresh session", by_name[USER_FRESH]),
                        ("connection held", by_name[USER_HELD])):
        print(
            f"ratios vs user token ({label}): median cold/user "
            f"{cold.median_us / user.median_us:.2f}, warm/user "
            f"{warm.median_us / user.median_us:.3f}; p95 cold/user "
            f"{cold.p95_us / user.p95_us:.2f}, warm/user {warm.p95_us / user.p95_us:.3f}"
        )

    print(
        f"\n2. Mint: POST {MINT_PATH.format(org=ORG)} over loopback HTTP (user token, grant "
        f"path; 1 uvicorn process, {HTTP_CLIENTS} client threads, {HTTP_ROUNDS} alternating "
        f"rounds x {plan.http_requests:,} requests), and agent_tokens.mint + commit in process"
    )
    rows = []
    for t in targets:
        mint = summarize(t.mint_samples)
        rows.append([
            f"{t.rows:,}", f"{t.rate:.0f}", " / ".join(f"{r.rate:.0f}" for r in t.rounds),
            str(sum(r.errors for r in t.rounds)), f"{mint.median_us:.0f}", f"{mint.p95_us:.0f}",
            f"{t.carried[0]}/{mint.iterations + WARMUP}",
        ])
    print(table(
        ["write_grants rows", "HTTP mint/s (median)", "rounds", "errors",
         "in-process median µs", "p95 µs", "carried grant"],
        rows,
    ))
    small, large = targets[0], targets[-1]
    pairs = " / ".join(
        f"{b.rate / a.rate:.2f}" for a, b in zip(small.rounds, large.rounds, strict=True)
    )
    small_mint, large_mint = summarize(small.mint_samples), summarize(large.mint_samples)
    print(
        f"ratio {large.rows:,} / {small.rows:,} rows (1.00 = no slowdown): HTTP mint/s "
        f"{large.rate / small.rate:.2f} (per round pair {pairs}); in-process mint time "
        f"{large_mint.median_us / small_mint.median_us:.2f} (median), "
        f"{large_mint.p95_us / small_mint.p95_us:.2f} (p95)"
    )
    for t in targets:
        print(f"\nplan of the live_grant lookup at {t.rows:,} rows:")
        for line in t.plan:
            print("  " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer iterations")
    parser.add_argument("--serve", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    plan = QUICK if args.quick else FULL
    admin_url = os.environ.get("SCOPEGATE_BENCH_DATABASE_URL", DEFAULT_ADMIN_URL)
    print("scopegate agent-token bench" + (" (--quick)" if args.quick else ""))
    for line in environment(admin_url):
        print("  " + line)
    run(admin_url, plan)


if __name__ == "__main__":
    main()
