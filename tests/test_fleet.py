"""Two server processes behind one base URL, sharing PostgreSQL and Redis: what one does
the other honours, and when a service goes away every answer is a 503 or a decision the
process could still take safely, never a 500 and never an allow it could not confirm.

Issue #12's list, by name: a session revoked at one process stops its token at the other
within the bound; a key rotated at one verifies at the other; a role downgrade at one
narrows access at the other; Redis and then the database taken away (``support/proxy.py``
cuts the TCP path of both processes), each in turn, answer 503 with ``Retry-After`` where
the service is needed, and everything recovers by itself. ``tests/test_propagation.py``
measures the propagation delays and the partitioned case; this module does not repeat
its measurements. The rate limit counted across both processes is
``tests/test_rate_limits_fleet.py``'s.

Changes "at a process" that have no HTTP endpoint (key rotation, role changes) are made
with the ``scopegate`` CLI in that process's environment: its commit is announced over
the same bus (``cli/units.py``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.engine import make_url

from scopegate.core.roles import Role
from scopegate.services import directory
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.models import User
from support.database import world_database
from support.fleet import (
    MINT,
    ORG,
    OWNER,
    Cluster,
    Seen,
    bearer,
    cli,
    cut_off,
    kid,
    login_owner,
    mint,
    read_for,
    try_login,
    unavailable,
    until,
    user_token,
    via,
)
from support.live_server import spawn_scopegate, wait_ready
from support.proxy import TcpProxy
from support.settings import REDIS_URL, require_service
from support.world import password_hash

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("fleet")]

#: The cluster's own server secret: the counters it keeps in the shared test Redis (rate
#: limits, login budgets) are keyed by it, so other tests' counts never reach its limits.
SECRET = "fleet-test-secret-not-for-production-0123456789"
#: One base URL for both processes: agent tokens name it as issuer and audience.
BASE_URL = "http://127.0.0.1"
ISSUES = "/api/0/organizations/acme/issues/"
APPROVE = "/api/0/organizations/acme/agent/approve/"
#: A manager of acme created for the downgrade (no other test changes its role).
DOWNGRADED = "fleet-manager@acme.test"
#: Propagation bound with Redis (the issue's target).
BUS_BOUND_SECONDS = 1.0
#: Both processes' SCOPEGATE_CACHE_SECONDS: without the bus, a change is heard within
#: this (+ slack) by polling the change counters; without both, no cached allow outlives it.
CACHE_SECONDS = 2.0
SLACK_SECONDS = 0.5
#: How long a recovery may take once a service is back (bus reconnect, pool refill).
RECOVERY_SECONDS = 15.0
#: A code exchange for a client that does not exist (answered 400 when all is well).
OAUTH_CODE = {"grant_type": "authorization_code", "code": "x" * 40, "client_id": "unknown",
              "code_verifier": "v" * 50, "redirect_uri": "http://127.0.0.1:7777/cb"}
#: A valid dynamic registration (answered 201 when all is well).
REGISTRATION = {"client_name": "fleet", "redirect_uris": ["http://127.0.0.1:7777/cb"],
                "token_endpoint_auth_method": "none", "application_type": "native"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis_url = require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")
    with world_database("fleet", SECRET) as (url, _):
        base = make_url(url)
        engine = make_engine(url)
        with make_sessionmaker(engine)() as session:
            manager = User(email=DOWNGRADED, name="fleet", password_hash=password_hash())
            session.add(manager)
            session.flush()
            directory.add_member(session, directory.get_org(session, "acme"), manager,
                                 Role.MANAGER)
            session.commit()
        engine.dispose()

        redis_parts = urlsplit(redis_url)
        pg_proxy = TcpProxy(base.host or "127.0.0.1", base.port or 5432).start()
        redis_proxy = TcpProxy(redis_parts.hostname or "127.0.0.1",
                               redis_parts.port or 6379).start()
        env = {
            "SCOPEGATE_DATABASE_URL": make_url(url).set(host="127.0.0.1", port=pg_proxy.port)
            .render_as_string(hide_password=False),
            "SCOPEGATE_REDIS_URL": via(redis_url, redis_proxy.port),
            "SCOPEGATE_SECRET_KEY": SECRET,
            "SCOPEGATE_BASE_URL": BASE_URL,
            "SCOPEGATE_CACHE_SECONDS": str(CACHE_SECONDS),
            "SCOPEGATE_WORKER_THREADS": "4",
            "SCOPEGATE_LOG_LEVEL": "WARNING",
        }
        logs = tmp_path_factory.mktemp("fleet")
        servers = [spawn_scopegate("fleet_a", env, logs), spawn_scopegate("fleet_b", env, logs)]
        try:
            wait_ready(servers)
            yield Cluster(url, env, *servers, pg_proxy=pg_proxy, redis_proxy=redis_proxy)
        finally:
            for server in servers:
                server.stop()
            pg_proxy.close()
            redis_proxy.close()


# -- propagation: what one process does, the other honours ----------------------------

def test_a_session_revoked_at_one_stops_its_token_at_the_other_within_the_bound(
        cluster: Cluster) -> None:
    _, owner = user_token(cluster.database_url, OWNER)
    with httpx.Client(timeout=5) as client:
        agent = mint(client, cluster.a, owner, "fleet-revoked")
        for server in cluster.servers:
            assert client.get(server.url(ORG), headers=bearer(agent)).status_code == 200
        revoked = client.delete(cluster.a.url(f"{ORG}agent/sessions/fleet-revoked/"),
                                headers=bearer(owner))
        assert revoked.status_code == 204, revoked.text
        delay = until(lambda: client.get(cluster.b.url(ORG),
                                          headers=bearer(agent)).status_code == 401,
                       BUS_BOUND_SECONDS)
        assert delay is not None, f"still accepted at b {BUS_BOUND_SECONDS} s after revoking"
        assert client.get(cluster.a.url(ORG), headers=bearer(agent)).status_code == 401


def test_a_key_rotated_at_one_verifies_at_the_other(cluster: Cluster) -> None:
    """After ``scopegate keys rotate`` in a's environment: a signs with the new key, b
    accepts those tokens (and publishes the key), and tokens signed with the old key
    stay valid at both until they expire."""
    _, owner = user_token(cluster.database_url, OWNER)
    with httpx.Client(timeout=5) as client:
        old = mint(client, cluster.a, owner, "fleet-before-rotation")
        old_kid = kid(old)
        printed = cli(cluster, "keys", "rotate")
        found = re.search(r"new active key: (\S+)", printed)
        assert found, printed
        new_kid = found.group(1)
        assert new_kid != old_kid

        minted: list[str] = []

        def signs_with_new_key() -> bool:
            minted.append(mint(client, cluster.a, owner, f"fleet-rotated-{len(minted)}"))
            return kid(minted[-1]) == new_kid

        assert until(signs_with_new_key, 10) is not None, "a never signed with the new key"
        new = minted[-1]
        for server in cluster.servers:
            for token in (new, old):
                answer = client.get(server.url(ORG), headers=bearer(token))
                assert answer.status_code == 200, (server.name, kid(token), answer.text)
        published = client.get(cluster.b.url("/.well-known/jwks.json")).json()
        assert {old_kid, new_kid} <= {key["kid"] for key in published["keys"]}


def test_a_role_downgrade_at_one_narrows_access_at_the_other_within_the_bound(
        cluster: Cluster) -> None:
    """``scopegate member add … --role member`` in a's environment turns a manager into a
    member: b stops allowing what only a manager may do (``org:write``) within 1 s."""
    _, token = user_token(cluster.database_url, DOWNGRADED,
                           frozenset({"org:read", "org:write"}))
    rename = {"name": "Acme"}
    with httpx.Client(timeout=5) as client:
        for server in cluster.servers:
            assert client.get(server.url(ORG), headers=bearer(token)).json()["role"] == "manager"
            assert client.put(server.url(ORG), json=rename,
                              headers=bearer(token)).status_code == 200
        cli(cluster, "member", "add", "acme", DOWNGRADED, "--role", "member")
        delay = until(lambda: client.get(cluster.b.url(ORG),
                                          headers=bearer(token)).json().get("role") == "member",
                       BUS_BOUND_SECONDS)
        assert delay is not None, f"b still saw a manager {BUS_BOUND_SECONDS} s later"
        for server in cluster.servers:
            refused = client.put(server.url(ORG), json=rename, headers=bearer(token))
            assert refused.status_code == 403, (server.name, refused.text)
            assert client.get(server.url(ORG), headers=bearer(token)).status_code == 200


# -- Redis out: what needs it answers 503, what the database decides still works ------

def test_with_redis_cut_what_needs_redis_answers_503_and_recovers(cluster: Cluster) -> None:
    """Login (its failure budgets), the rate-limited endpoints (their counters) and the
    device-code page (its wrong-code count) need Redis: 503 with ``Retry-After`` at both
    processes, never unlimited."""
    _, owner = user_token(cluster.database_url, OWNER)
    seen = Seen()
    browsers = [login_owner(server) for server in cluster.servers]
    try:
        with httpx.Client(timeout=5) as client, cut_off(cluster.redis_proxy):
            for server, (browser, csrf) in zip(cluster.servers, browsers, strict=True):
                unavailable(seen.note("login", try_login(server)), f"login at {server.name}")
                unavailable(seen.note("mint", client.post(
                    server.url(MINT), json={"sessionId": "fleet-no-redis"},
                    headers=bearer(owner))), f"mint at {server.name}")
                unavailable(seen.note("token create", client.post(
                    server.url("/api/0/api-tokens/"), json={"scopes": ["org:read"]},
                    headers=bearer(owner))), f"token creation at {server.name}")
                unavailable(seen.note("approval", browser.post(
                    APPROVE, json={"sessionId": "fleet-no-redis", "scopes": ["event:write"]},
                    headers={"X-CSRF-Token": csrf})), f"approval at {server.name}")
                unavailable(seen.note("device code", browser.post(
                    "/oauth/device", data={"user_code": "BCDF-GHJK", "csrf_token": csrf})),
                    f"device user code at {server.name}")
                for what, response in [
                    ("oauth token", client.post(server.url("/oauth/token"), data=OAUTH_CODE)),
                    ("client registration", client.post(server.url("/oauth/register"),
                                                        json=REGISTRATION)),
                    ("device authorization", client.post(server.url("/oauth/device/code"),
                                                         data={"client_id": "unknown"})),
                ]:
                    unavailable(seen.note(what, response), f"{what} at {server.name}")
        assert not seen.server_errors(), seen.server_errors()

        # Back: every one of them works again, by itself.
        with httpx.Client(timeout=5) as client:
            for server, (browser, csrf) in zip(cluster.servers, browsers, strict=True):
                assert until(lambda s=server: try_login(s).status_code == 303,
                              RECOVERY_SECONDS) is not None, f"login at {server.name}"
                assert until(lambda s=server: client.post(
                    s.url(MINT), json={"sessionId": "fleet-redis-back"},
                    headers=bearer(owner)).status_code == 201,
                    RECOVERY_SECONDS) is not None, f"mint at {server.name}"
                approved = browser.post(APPROVE, headers={"X-CSRF-Token": csrf}, json={
                    "sessionId": "fleet-redis-back", "scopes": ["event:write"]})
                assert approved.status_code == 201, approved.text
    finally:
        for browser, _ in browsers:
            browser.close()


def test_with_redis_cut_reads_are_decided_from_the_database_and_revocations_still_reach(
        cluster: Cluster) -> None:
    """Without the bus, both processes answer reads from the database (their caches
    confirmed by polling), and a revocation at a is refused at b within the polled
    bound: nothing is allowed that should not be."""
    _, owner = user_token(cluster.database_url, OWNER)
    victim_id, victim = user_token(cluster.database_url, OWNER)
    seen = Seen()
    with httpx.Client(timeout=5) as client:
        agent = mint(client, cluster.a, owner, "fleet-no-bus")
        with cut_off(cluster.redis_proxy):
            for server in cluster.servers:
                for token in (owner, victim, agent):
                    for path in (ORG, ISSUES):
                        answer = seen.note(path, client.get(server.url(path),
                                                            headers=bearer(token)))
                        assert answer.status_code == 200, (server.name, path, answer.text)
            bound = CACHE_SECONDS + SLACK_SECONDS
            for what, path, token in (
                ("revoked token", f"/api/0/api-tokens/{victim_id}/", victim),
                ("revoked session", f"{ORG}agent/sessions/fleet-no-bus/", agent),
            ):
                revoked = client.delete(cluster.a.url(path), headers=bearer(owner))
                assert revoked.status_code == 204, revoked.text
                assert until(lambda what=what, token=token: seen.note(what, client.get(
                    cluster.b.url(ORG), headers=bearer(token))).status_code == 401,
                    bound) is not None, f"a {what} was still allowed at b after {bound} s"
    assert not seen.server_errors(), seen.server_errors()


# -- the database out: cached decisions only while they can be trusted, then 503 ------

def test_with_the_database_cut_only_confirmed_cached_reads_work_then_503_and_recovery(
        cluster: Cluster) -> None:
    """The database gone, Redis still up: the bus keeps confirming that no change was
    missed, so warm reads keep being decided from the caches (the deny list included);
    everything that needs the database answers 503. Then Redis goes too: no change can
    be confirmed any more, and from the bound on every read is 503. Both back: all works."""
    _, owner = user_token(cluster.database_url, OWNER)
    _, unseen = user_token(cluster.database_url, OWNER)  # never shown to a process
    seen = Seen()
    browsers = [login_owner(server) for server in cluster.servers]
    try:
        with httpx.Client(timeout=3) as client:
            agent = mint(client, cluster.a, owner, "fleet-no-db")
            # Steady traffic for a while, as in a live deployment: each process polls the
            # change counters every cache_seconds / 2 and forgets a topic whose counter
            # moved (here: the token and the mint just written), then re-caches.
            read_for(client, cluster.servers, (owner, agent), CACHE_SECONDS)
            with cut_off(cluster.pg_proxy):
                # Longer than the bound: the bus alone keeps the caches trusted.
                started = time.monotonic()
                while time.monotonic() - started < CACHE_SECONDS + 2 * SLACK_SECONDS:
                    for server in cluster.servers:
                        for token in (owner, agent):
                            answer = seen.note("cached read", client.get(
                                server.url(ORG), headers=bearer(token)))
                            assert answer.status_code == 200, (server.name, answer.text)
                    threading.Event().wait(0.1)
                for server, (browser, csrf) in zip(cluster.servers, browsers, strict=True):
                    for what, response in [
                        ("issues (user)", client.get(server.url(ISSUES), headers=bearer(owner))),
                        ("issues (agent)", client.get(server.url(ISSUES),
                                                      headers=bearer(agent))),
                        ("unseen token", client.get(server.url(ORG), headers=bearer(unseen))),
                        ("mint", client.post(server.url(MINT), json={"sessionId": "fleet-x"},
                                             headers=bearer(owner))),
                        ("token create", client.post(server.url("/api/0/api-tokens/"),
                                                     json={"scopes": ["org:read"]},
                                                     headers=bearer(owner))),
                        ("login", try_login(server)),
                        ("account page", browser.get("/account")),
                        ("approval", browser.post(APPROVE, headers={"X-CSRF-Token": csrf},
                                                  json={"sessionId": "fleet-x",
                                                        "scopes": ["event:write"]})),
                        ("oauth token", client.post(server.url("/oauth/token"),
                                                    data=OAUTH_CODE)),
                        ("client registration", client.post(server.url("/oauth/register"),
                                                            json=REGISTRATION)),
                    ]:
                        unavailable(seen.note(what, response), f"{what} at {server.name}")

                with cut_off(cluster.redis_proxy):
                    out = time.monotonic()
                    late: list[tuple[str, int]] = []
                    while (at := time.monotonic() - out) < CACHE_SECONDS + 1.5:
                        for server in cluster.servers:
                            for token in (owner, agent):
                                status = seen.note("read, nothing confirmed", client.get(
                                    server.url(ORG), headers=bearer(token))).status_code
                                if at > CACHE_SECONDS + SLACK_SECONDS:
                                    late.append((server.name, status))
                        threading.Event().wait(0.1)
                    assert late, "no request was answered after the bound"
                    assert all(status == 503 for _, status in late), late
        assert not seen.server_errors(), seen.server_errors()

        with httpx.Client(timeout=5) as client:
            for server, (browser, csrf) in zip(cluster.servers, browsers, strict=True):
                for token in (owner, agent, unseen):
                    assert until(lambda s=server, t=token: client.get(
                        s.url(ORG), headers=bearer(t)).status_code == 200,
                        RECOVERY_SECONDS) is not None, f"read at {server.name}"
                assert client.get(server.url(ISSUES), headers=bearer(agent)).status_code \
                    == 200
                assert mint(client, server, owner, f"fleet-db-back-{server.name}")
                approved = browser.post(APPROVE, headers={"X-CSRF-Token": csrf}, json={
                    "sessionId": f"fleet-db-back-{server.name}", "scopes": ["event:write"]})
                assert approved.status_code == 201, approved.text
                assert try_login(server).status_code == 303
    finally:
        for browser, _ in browsers:
            browser.close()


# -- readiness follows the services; liveness does not ----------------------------------

def test_readiness_is_503_while_redis_or_the_database_is_cut_and_liveness_stays_200(
        cluster: Cluster) -> None:
    with httpx.Client(timeout=5) as client:
        for proxy, check in ((cluster.redis_proxy, "redis"), (cluster.pg_proxy, "database")):
            with cut_off(proxy):
                for server in cluster.servers:
                    ready = client.get(server.url("/readyz"))
                    unavailable(ready, f"readyz at {server.name} without {check}")
                    assert check in ready.text.lower(), (check, ready.text)
                    assert client.get(server.url("/healthz")).status_code == 200
            for server in cluster.servers:
                assert until(lambda s=server: client.get(s.url("/readyz")).status_code == 200,
                              RECOVERY_SECONDS) is not None, f"readyz at {server.name}"
