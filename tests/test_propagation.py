"""A change made in one server process reaches another within the bound; without the bus
and the database, a process stops answering from its caches (fail closed).

Real processes: each server is ``uvicorn scopegate.web.app:create_app --factory`` in a
subprocess, configured by ``SCOPEGATE_*`` variables, on one scratch PostgreSQL database
(created, migrated and seeded here, dropped afterwards). Every server shares one base
URL, so an agent token minted by one is valid at the other. Measured delays are printed
(``pytest -s``) and recorded as test properties (``--junitxml``); the only bounds asserted
are the documented ones: 1 s with Redis, ``SCOPEGATE_CACHE_SECONDS`` + 0.5 s without, and
no cached allow past ``SCOPEGATE_CACHE_SECONDS`` + 0.5 s once PostgreSQL and Redis are
both out of reach (cut, or silently partitioned: ``support/proxy.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.engine import make_url

from scopegate.core.roles import Role
from scopegate.runtime.process import Runtime
from scopegate.services import directory
from scopegate.settings import Settings
from support.database import world_database
from support.fleet import bearer, user_token, via
from support.live_server import ServerProcess, spawn_scopegate, wait_ready
from support.proxy import TcpProxy
from support.settings import REDIS_URL, SECRET, require_service

#: One set of servers for the module: under ``pytest -n`` with ``--dist loadgroup`` the
#: module's tests share one worker instead of each worker starting its own servers.
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("propagation")]

#: One base URL for every server: agent tokens name it as issuer and audience.
BASE_URL = "http://127.0.0.1"
#: Answered by the gate alone: the endpoint returns what the gate assembled, so a 200
#: here is a decision taken from the caches (or the database) and nothing else.
ORG = "/api/0/organizations/acme/"
OWNER = f"{Role.OWNER.value}@acme.test"
#: The propagation bound with Redis (the issue's target).
BUS_BOUND_SECONDS = 1.0
#: The bus pair's SCOPEGATE_CACHE_SECONDS: counters polled every 2.5 s, caches trusted
#: for 5 s, so a refusal within 1 s is the bus's doing (see section (a)).
BUS_CACHE_SECONDS = 5.0
POLL_CACHE_SECONDS = 2.0
GUARDED_CACHE_SECONDS = 2.0
#: Slack on top of ``cache_seconds`` for the polled and the fail-closed bounds.
SLACK_SECONDS = 0.5
#: Pause between two requests of a poll loop (pacing only; nothing is timed by it).
PACE_SECONDS = 0.01
FAIL_CLOSED_PACE_SECONDS = 0.1


@dataclass
class Cluster:
    database_url: str
    #: With Redis, ``cache_seconds`` 5: only the bus can be quick.
    bus_a: ServerProcess
    bus_b: ServerProcess
    #: Without Redis, ``cache_seconds`` 2: the counters are the only signal.
    poll_a: ServerProcess
    poll_b: ServerProcess
    #: With Redis, ``cache_seconds`` 2, reaching PostgreSQL and Redis through proxies.
    guarded: ServerProcess
    pg_proxy: TcpProxy
    redis_proxy: TcpProxy


def _spawn(name: str, database_url: str, redis_url: str | None, cache_seconds: float,
           logs: Path) -> ServerProcess:
    env = {
        "SCOPEGATE_DATABASE_URL": database_url,
        "SCOPEGATE_SECRET_KEY": SECRET,
        "SCOPEGATE_BASE_URL": BASE_URL,
        "SCOPEGATE_CACHE_SECONDS": str(cache_seconds),
        "SCOPEGATE_WORKER_THREADS": "4",
        "SCOPEGATE_LOG_LEVEL": "WARNING",
    }
    if redis_url:
        env["SCOPEGATE_REDIS_URL"] = redis_url
    return spawn_scopegate(name, env, logs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis_url = require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")
    with world_database("prop") as (url, _):
        base = make_url(url)
        redis_parts = urlsplit(redis_url)
        pg_proxy = TcpProxy(base.host or "127.0.0.1", base.port or 5432).start()
        redis_proxy = TcpProxy(redis_parts.hostname or "127.0.0.1",
                               redis_parts.port or 6379).start()
        logs = tmp_path_factory.mktemp("propagation")
        guarded_url = make_url(url).set(host="127.0.0.1", port=pg_proxy.port)
        servers = [
            _spawn("bus_a", url, redis_url, BUS_CACHE_SECONDS, logs),
            _spawn("bus_b", url, redis_url, BUS_CACHE_SECONDS, logs),
            _spawn("poll_a", url, None, POLL_CACHE_SECONDS, logs),
            _spawn("poll_b", url, None, POLL_CACHE_SECONDS, logs),
            _spawn("guarded", guarded_url.render_as_string(hide_password=False),
                   via(redis_url, redis_proxy.port), GUARDED_CACHE_SECONDS, logs),
        ]
        try:
            wait_ready(servers)
            yield Cluster(url, *servers, pg_proxy=pg_proxy, redis_proxy=redis_proxy)
        finally:
            for server in servers:
                server.stop()
            pg_proxy.close()
            redis_proxy.close()


# -- helpers ---------------------------------------------------------------------------
def _warm(client: httpx.Client, server: ServerProcess, token: str) -> None:
    """Two answers of 200: the second comes from what the first cached."""
    for _ in range(2):
        response = client.get(server.url(ORG), headers=bearer(token))
        assert response.status_code == 200, (response.status_code, response.text)


def _refused_after(client: httpx.Client, server: ServerProcess, token: str, since: float,
                   bound: float) -> tuple[float | None, int]:
    """Ask ``server`` until it refuses ``token`` or ``bound`` seconds have passed since
    ``since``: (seconds from ``since`` to the first refusal or None, its status)."""
    while True:
        response = client.get(server.url(ORG), headers=bearer(token))
        elapsed = time.monotonic() - since
        if response.status_code != 200:
            return elapsed, response.status_code
        if elapsed > bound:
            return None, 200
        threading.Event().wait(PACE_SECONDS)


def _report(record: Callable[[str, object], None], name: str, seconds: float | None) -> None:
    shown = "never" if seconds is None else f"{seconds * 1000:.0f} ms"
    print(f"\n[propagation] {name}: {shown}")
    record(name, seconds)


def _revoke_user_token_and_measure(client: httpx.Client, a: ServerProcess, b: ServerProcess,
                                   database_url: str, bound: float) -> tuple[float | None, int]:
    _, revoker = user_token(database_url, OWNER)
    victim_id, victim = user_token(database_url, OWNER)
    _warm(client, b, victim)
    response = client.delete(a.url(f"/api/0/api-tokens/{victim_id}/"), headers=bearer(revoker))
    assert response.status_code == 204, response.text
    returned = time.monotonic()
    # A process that made a change refuses at once (the bound is about the others).
    assert client.get(a.url(ORG), headers=bearer(victim)).status_code == 401
    return _refused_after(client, b, victim, returned, bound)


def _revoke_agent_session_and_measure(client: httpx.Client, a: ServerProcess, b: ServerProcess,
                                      database_url: str, session_id: str,
                                      bound: float) -> tuple[float | None, int]:
    _, owner = user_token(database_url, OWNER)
    minted = client.post(a.url("/api/0/organizations/acme/agent/token/"),
                         json={"sessionId": session_id}, headers=bearer(owner))
    assert minted.status_code == 201, minted.text
    agent = minted.json()["token"]
    _warm(client, b, agent)
    response = client.delete(a.url(f"/api/0/organizations/acme/agent/sessions/{session_id}/"),
                             headers=bearer(owner))
    assert response.status_code == 204, response.text
    returned = time.monotonic()
    assert client.get(a.url(ORG), headers=bearer(agent)).status_code == 401
    return _refused_after(client, b, agent, returned, bound)


# -- (a) with Redis: pushed over the bus, well within 1 s ------------------------------
# Both servers run with SCOPEGATE_CACHE_SECONDS=5: their counters are polled every 2.5 s
# and their caches trusted for 5 s, so a refusal within 1 s comes from the bus.

def test_with_redis_a_revoked_user_token_is_refused_by_another_process_within_1s(
        cluster: Cluster, record_property: Callable[[str, object], None]) -> None:
    with httpx.Client(timeout=5) as client:
        delay, status = _revoke_user_token_and_measure(
            client, cluster.bus_a, cluster.bus_b, cluster.database_url, BUS_BOUND_SECONDS)
    _report(record_property, "bus: user token refused after", delay)
    assert delay is not None and delay <= BUS_BOUND_SECONDS, delay
    assert status == 401


def test_with_redis_a_revoked_agent_session_is_refused_by_another_process_within_1s(
        cluster: Cluster, record_property: Callable[[str, object], None]) -> None:
    with httpx.Client(timeout=5) as client:
        delay, status = _revoke_agent_session_and_measure(
            client, cluster.bus_a, cluster.bus_b, cluster.database_url, "prop-bus",
            BUS_BOUND_SECONDS)
    _report(record_property, "bus: agent session refused after", delay)
    assert delay is not None and delay <= BUS_BOUND_SECONDS, delay
    assert status == 401


def test_with_redis_a_membership_removed_elsewhere_is_refused_within_1s(
        cluster: Cluster, record_property: Callable[[str, object], None]) -> None:
    """No API changes roles yet: a third process (this one, on the same runtime code)
    removes the membership; its commit is announced over the bus like any other."""
    member = f"{Role.MEMBER.value}@acme.test"
    _, token = user_token(cluster.database_url, member)
    runtime = Runtime.build(Settings(database_url=cluster.database_url, secret_key=SECRET,
                                     base_url=BASE_URL, redis_url=REDIS_URL))
    try:
        with httpx.Client(timeout=5) as client:
            _warm(client, cluster.bus_b, token)
            with runtime.factory() as db:
                directory.remove_member(db, directory.get_org(db, "acme"),
                                        directory.get_user_by_email(db, member))
                db.commit()
            committed = time.monotonic()
            delay, status = _refused_after(client, cluster.bus_b, token, committed,
                                           BUS_BOUND_SECONDS)
    finally:
        runtime.close()
    _report(record_property, "bus: membership removal refused after", delay)
    assert delay is not None and delay <= BUS_BOUND_SECONDS, delay
    assert status in (403, 404)


# -- (b) without Redis: the polled counters, within cache_seconds ----------------------

def test_without_redis_a_revoked_user_token_is_refused_within_cache_seconds(
        cluster: Cluster, record_property: Callable[[str, object], None]) -> None:
    bound = POLL_CACHE_SECONDS + SLACK_SECONDS
    with httpx.Client(timeout=5) as client:
        delay, status = _revoke_user_token_and_measure(
            client, cluster.poll_a, cluster.poll_b, cluster.database_url, bound)
    _report(record_property, "counters: user token refused after", delay)
    assert delay is not None and delay <= bound, delay
    assert status == 401


def test_without_redis_a_revoked_agent_session_is_refused_within_cache_seconds(
        cluster: Cluster, record_property: Callable[[str, object], None]) -> None:
    bound = POLL_CACHE_SECONDS + SLACK_SECONDS
    with httpx.Client(timeout=5) as client:
        delay, status = _revoke_agent_session_and_measure(
            client, cluster.poll_a, cluster.poll_b, cluster.database_url, "prop-poll", bound)
    _report(record_property, "counters: agent session refused after", delay)
    assert delay is not None and delay <= bound, delay
    assert status == 401


# -- (c) fail closed: no bus, no database, no cached allow past the bound ---------------
# The guarded server reaches PostgreSQL and Redis only through proxies. A *cut* resets
# every connection and refuses new ones (the services went down): the bus notices the
# drop, the caches are forgotten at once and every answer is 503. A *partition* keeps the
# connections open but forwards nothing: no error anywhere, the bus just stops answering
# pings, so only the bound itself (``ChangeFeed.fresh``) stops the cached allows.

def _answers_while_out(client: httpx.Client, server: ServerProcess, token: str, out: float,
                       seconds: float) -> list[tuple[float, int | str]]:
    """Ask every ~100 ms for ``seconds`` after ``out``: (seconds since ``out``, status or
    the transport error's name)."""
    answers: list[tuple[float, int | str]] = []
    while (asked := time.monotonic()) - out < seconds:
        try:
            status: int | str = client.get(server.url(ORG), headers=bearer(token)).status_code
        except httpx.TransportError as error:
            status = type(error).__name__
        answers.append((asked - out, status))
        threading.Event().wait(FAIL_CLOSED_PACE_SECONDS)
    return answers


def _recovery(client: httpx.Client, server: ServerProcess, token: str) -> float | None:
    """Seconds until ``server`` answers 200 again (None: not within 10 s)."""
    restored = time.monotonic()
    while time.monotonic() - restored < 10:
        try:
            if client.get(server.url(ORG), headers=bearer(token)).status_code == 200:
                return time.monotonic() - restored
        except httpx.TransportError:
            pass
        threading.Event().wait(FAIL_CLOSED_PACE_SECONDS)
    return None


def _take_out(cluster: Cluster, how: str, record: Callable[[str, object], None],
              timeout: float) -> tuple[list[tuple[float, int | str]], float | None]:
    """Warm the guarded server, take both services out (``cut`` or ``freeze``), ask for
    ``cache_seconds`` + 1.5 s, restore; the answers and the recovery time."""
    server = cluster.guarded
    _, token = user_token(cluster.database_url, OWNER)
    proxies = (cluster.pg_proxy, cluster.redis_proxy)
    with httpx.Client(timeout=timeout) as client:
        _warm(client, server, token)
        out = time.monotonic()
        for proxy in proxies:
            getattr(proxy, how)()
        try:
            answers = _answers_while_out(client, server, token, out,
                                         GUARDED_CACHE_SECONDS + 1.5)
        finally:
            for proxy in proxies:
                proxy.restore()
        recovered = _recovery(client, server, token)
    first_refusal = next((at for at, status in answers if status != 200), None)
    print(f"\n[propagation] {how}: answers", [(round(at, 2), s) for at, s in answers])
    _report(record, f"fail closed ({how}): first non-200 after", first_refusal)
    _report(record, f"fail closed ({how}): 200 again after the restore", recovered)
    return answers, recovered


def test_with_bus_and_database_cut_no_cached_allow_outlives_the_bound(
        cluster: Cluster, record_property: Callable[[str, object], None]) -> None:
    bound = GUARDED_CACHE_SECONDS + SLACK_SECONDS
    answers, recovered = _take_out(cluster, "cut", record_property, timeout=3)
    late = [(round(at, 2), status) for at, status in answers if at > bound]
    assert late, "no request was answered after the bound"
    assert all(status == 503 for _, status in late), late
    assert recovered is not None, "the server did not answer 200 within 10 s of the restore"


def test_with_bus_and_database_partitioned_no_cached_allow_outlives_the_bound(
        cluster: Cluster, record_property: Callable[[str, object], None]) -> None:
    """Requests that reach for the silent database wait (they are answered once it is
    back); the client gives up after 0.5 s. Whatever happens, never a cached 200."""
    bound = GUARDED_CACHE_SECONDS + SLACK_SECONDS
    answers, recovered = _take_out(cluster, "freeze", record_property, timeout=0.5)
    late = [(round(at, 2), status) for at, status in answers if at > bound]
    assert late, "no request was answered after the bound"
    assert all(status != 200 for _, status in late), late
    assert recovered is not None, "the server did not answer 200 within 10 s of the restore"
