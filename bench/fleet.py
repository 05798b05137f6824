"""Mixed traffic against ``scopegate serve --workers 1`` and then ``--workers 2`` on
PostgreSQL + Redis: req/s, p50/p99 and errors per traffic kind, and the scaling ratio.

A scratch PostgreSQL database (beside ``SCOPEGATE_BENCH_DATABASE_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``; created, seeded with the demo
organization and 25 issues, dropped afterwards) and Redis (``SCOPEGATE_BENCH_REDIS_URL``,
default ``redis://127.0.0.1:6379/14``: the change bus and the shared counters). Each
configuration is one real ``scopegate serve`` on loopback, with rate limits off (the
bench would spend them: ``SCOPEGATE_RATE_LIMITS_ENABLED=false``).

The four kinds of traffic run at the same time, each from its own keep-alive clients
(``tests/support/load.py``), so a slow kind does not hold back the others: agent-token
reads and user-token reads (``GET …/issues/``, 25 issues; 3/8 of the clients each), mints
(``POST …/agent/token/``, a new session each) and approvals (``POST …/agent/approve/``
from a logged-in browser session; 1/8 each). The load is bounded by count and time
(``--count`` requests in all, shared in those proportions, or ``--seconds``, whichever
ends first), loopback only, after a short unmeasured warm-up. The load generator shares
the machine with the servers, PostgreSQL and Redis: on a small machine the ratio says as
much about the cores left as about the workers, so the CPU count and the load average
are printed beside the figures.

Usage: ``python bench/fleet.py [--count N] [--seconds S] [--clients C] [--workers 1,2]``
(``make bench-fleet``). Figures only: nothing here fails on a number.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # support.*

import httpx

from harness import HOST, SECRET, scratch_database, table
from rates import APPROVE, login
from serving import CURRENT, ISSUES, MINT, bearer, seed_in
from support.live_server import (
    ServerProcess,
    free_port,
    running,
    scopegate_env,
    spawn,
    wait_answer,
)
from support.load import LoadResult, Send, burst

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
#: Each kind: its share of the clients and of the requests (eighths), and its success.
KINDS = {"agent read": (3, 200), "user read": (3, 200), "mint": (1, 201),
         "approval": (1, 201)}
WARMUP = 160
START_SECONDS = 60.0


@dataclass(frozen=True)
class Run:
    workers: int
    results: dict[str, LoadResult]

    @property
    def wall_seconds(self) -> float:
        return max(result.wall_seconds for result in self.results.values())

    def ok(self, kind: str) -> int:
        return self.results[kind].statuses[KINDS[kind][1]]

    def rate(self, kind: str | None = None) -> float:
        """Successful requests per second: of one kind over its own wall time, or of all
        kinds over the longest."""
        if kind is not None:
            result = self.results[kind]
            return self.ok(kind) / result.wall_seconds if result.wall_seconds else 0.0
        total = sum(self.ok(name) for name in KINDS)
        return total / self.wall_seconds if self.wall_seconds else 0.0


def serve(url: str, redis_url: str, workers: int, log: Path) -> ServerProcess:
    """``scopegate serve --workers N`` on a free loopback port (output in ``log``)."""
    port = free_port()
    env = scopegate_env({
        "SCOPEGATE_DATABASE_URL": url,
        "SCOPEGATE_REDIS_URL": redis_url,
        "SCOPEGATE_SECRET_KEY": SECRET,
        "SCOPEGATE_BASE_URL": f"http://{HOST}:{port}",
        "SCOPEGATE_LOG_LEVEL": "WARNING",
        "SCOPEGATE_RATE_LIMITS_ENABLED": "false",
    })
    argv = [sys.executable, "-m", "scopegate.cli.main", "serve", "--host", HOST,
            "--port", str(port), "--workers", str(workers)]
    return spawn(f"serve --workers {workers}", argv, port=port, env=env, log=log)


def load(server: ServerProcess, tokens: dict[str, str], count: int, seconds: float,
         clients: int, label: str) -> dict[str, LoadResult]:
    """Every kind at once against ``server``, each bounded by its share of ``count`` and
    by ``seconds``; a fresh agent token and browser session per call."""
    user = bearer(tokens["user"])
    minted = httpx.post(server.url(MINT), headers=user, timeout=30,
                        json={"sessionId": f"bench-{label}", "ttlSeconds": 3600})
    if minted.status_code != 201:
        raise SystemExit(f"bench: the agent mint answered {minted.status_code}: {minted.text}")
    agent = bearer(minted.json()["token"])
    cookies, csrf = login(server, tokens["email"], tokens["password"])

    def read(client: httpx.Client, _: int) -> httpx.Response:
        return client.get(ISSUES)

    def mint(client: httpx.Client, n: int) -> httpx.Response:
        return client.post(MINT, json={"sessionId": f"{label}-m{n}"})

    def approve(client: httpx.Client, n: int) -> httpx.Response:
        return client.post(APPROVE, json={"sessionId": f"{label}-a{n}",
                                          "scopes": ["event:write"]})

    plans: dict[str, tuple[Send, dict[str, str], httpx.Cookies | None]] = {
        "agent read": (read, agent, None),
        "user read": (read, user, None),
        "mint": (mint, user, None),
        "approval": (approve, {"X-CSRF-Token": csrf}, cookies),
    }
    results: dict[str, LoadResult] = {}
    failures: list[BaseException] = []

    def run(kind: str) -> None:
        send, headers, jar = plans[kind]
        share = KINDS[kind][0]
        try:
            results[kind] = burst(send, max(1, clients * share // 8), max(1, count * share // 8),
                                  base_url=server.base_url, headers=headers, cookies=jar,
                                  seconds=seconds)
        except BaseException as error:  # re-raised in the main thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(kind,), name=f"bench-{kind}")
               for kind in KINDS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results


def measure(url: str, redis_url: str, tokens: dict[str, str], workers: int, count: int,
            seconds: float, clients: int, logs: Path) -> Run:
    server = serve(url, redis_url, workers, logs / f"serve-{workers}.log")
    with running(server):
        wait_answer(server, ISSUES, headers=bearer(tokens["user"]), seconds=START_SECONDS)
        warm = Run(workers, load(server, tokens, WARMUP, seconds, min(clients, 8),
                                 f"w{workers}-warm"))
        sent = sum(result.completed for result in warm.results.values())
        if sum(warm.ok(kind) for kind in KINDS) < sent // 2:
            raise SystemExit(f"bench: the warm-up mostly failed; see {server.log}")
        return Run(workers, load(server, tokens, count, seconds, clients, f"w{workers}"))


def statuses(counts: Counter[int]) -> str:
    return " ".join(f"{status}×{n}" for status, n in sorted(counts.items()))


def _percentile(latencies: list[float], fraction: float) -> float:
    if not latencies:
        return 0.0
    ordered = sorted(latencies)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))]


def report(runs: list[Run]) -> None:
    rows = []
    for run in runs:
        for kind in KINDS:
            result = run.results[kind]
            rows.append([f"{run.workers} worker(s): {kind}", f"{run.rate(kind):,.0f}",
                         f"{result.completed:,}", str(result.completed - run.ok(kind)),
                         statuses(result.statuses), f"{result.p50 * 1000:.1f}",
                         f"{result.p99 * 1000:.1f}"])
        latencies = [x for result in run.results.values() for x in result.latencies]
        every: Counter[int] = Counter()
        for result in run.results.values():
            every.update(result.statuses)
        sent = sum(every.values())
        ok = sum(run.ok(kind) for kind in KINDS)
        rows.append([f"{run.workers} worker(s): overall", f"{run.rate():,.0f}", f"{sent:,}",
                     str(sent - ok), statuses(every),
                     f"{_percentile(latencies, 0.5) * 1000:.1f}",
                     f"{_percentile(latencies, 0.99) * 1000:.1f}"])
    print()
    print(table(["traffic", "ok/s", "sent", "errors", "statuses", "p50 ms", "p99 ms"], rows))
    for run in runs:
        transport = [error for result in run.results.values() for error in result.errors]
        if transport:
            print(f"{run.workers} worker(s): {len(transport)} transport error(s) (status 0), "
                  f"e.g. {transport[0]}")
    if len(runs) >= 2:
        base = runs[0]
        print()
        for run in runs[1:]:
            per_kind = ", ".join(f"{kind} {run.rate(kind) / max(base.rate(kind), 1e-9):.2f}x"
                                 for kind in KINDS)
            print(f"scaling {base.workers} -> {run.workers} worker(s): overall "
                  f"{run.rate() / max(base.rate(), 1e-9):.2f}x ({per_kind})")


def main(count: int, seconds: float, clients: int, workers: list[int]) -> None:
    started = time.perf_counter()
    admin_url = os.environ.get("SCOPEGATE_BENCH_DATABASE_URL", DEFAULT_ADMIN_URL)
    redis_url = os.environ.get("SCOPEGATE_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    load_average = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"scopegate fleet bench: {os.cpu_count()} CPUs, load average {load_average}; "
          "`scopegate serve --workers N` on PostgreSQL + Redis, rate limits off")
    print(f"load: {clients} keep-alive clients (3/8 agent-token reads, 3/8 user-token reads,"
          f" 1/8 mints, 1/8 approvals, all at once), up to {count:,} requests or "
          f"{seconds:.0f} s per configuration, after {WARMUP} warm-up requests")
    runs = []
    with scratch_database(admin_url, "scopegate_bench_fleet") as url:
        tokens = seed_in(CURRENT, url)
        logs = Path(tempfile.mkdtemp(prefix="scopegate-bench-fleet-"))
        print(f"server logs: {logs}")
        for n in workers:
            runs.append(measure(url, redis_url, tokens, n, count, seconds, clients, logs))
            sent = sum(result.completed for result in runs[-1].results.values())
            print(f"  {n} worker(s): {sent:,} requests in {runs[-1].wall_seconds:.1f} s",
                  flush=True)
    report(runs)
    print(f"\nload average now {os.getloadavg()[0]:.2f}; total "
          f"{time.perf_counter() - started:.0f} s")


def _workers(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(not 1 <= n <= 16 for n in values):
        raise argparse.ArgumentTypeError("comma-separated worker counts, each 1-16")
    return values


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000,
                        help="requests per configuration, all kinds together")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="at most this long per configuration")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients in all")
    parser.add_argument("--workers", type=_workers, default=[1, 2],
                        help="worker counts to compare, e.g. 1,2")
    args = parser.parse_args()
    main(max(8, args.count), max(1.0, args.seconds), max(8, args.clients), args.workers)
