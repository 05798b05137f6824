"""``GET /metrics``: the counters move with the requests, with the right labels; and in
multiprocess mode a scrape of one process answers for every process sharing the
directory (two ``uvicorn`` processes; ``scopegate serve --workers 2``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from support.agent import agent_token_for, approve_via_api
from support.http import bearer, login
from support.live_server import (
    HOST,
    free_port,
    running,
    scopegate_env,
    spawn,
    spawn_scopegate,
    wait_ready,
)
from support.settings import SECRET
from support.world import World, user_token

DEADLINE_SECONDS = 20.0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_with_allowed_and_refused_requests(client: TestClient, db,
                                                         world: World) -> None:
    member = user_token(db, World.email("member"), {"org:read", "project:read"})
    db.commit()
    before = samples(client.get("/metrics").text)
    route = "/api/0/organizations/{org}/projects/"
    assert client.get("/api/0/organizations/acme/projects/", headers=bearer(member)
                      ).status_code == 200
    assert client.get("/api/0/organizations/acme/projects/", headers=bearer(member)
                      ).status_code == 200
    refused = client.put("/api/0/organizations/acme/", headers=bearer(member),
                         json={"name": "x"})
    assert refused.status_code == 403
    assert client.get("/api/0/organizations/acme/projects/",
                      headers=bearer("sgu_" + "0" * 40)).status_code == 401
    assert client.get("/no/such/page").status_code == 404
    after = samples(client.get("/metrics").text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("scopegate_http_requests_total", route=route, method="GET",
                 status="200") == 2
    assert moved("scopegate_http_requests_total", route=route, method="GET",
                 status="401") == 1
    assert moved("scopegate_http_requests_total", route="unmatched", method="GET",
                 status="404") == 1
    assert moved("scopegate_http_request_duration_seconds_count", route=route) == 3
    assert moved("scopegate_decisions_total", outcome="allow") == 2
    assert moved("scopegate_decisions_total", outcome="insufficient_scope") == 1
    assert moved("scopegate_decisions_total", outcome="unauthenticated") == 1
    assert moved("scopegate_challenges_total", scope="org:write") == 1
    # The second read was answered from the caches; the first loaded the credential.
    assert moved("scopegate_cache_lookups_total", cache="credentials_user",
                 result="hit") >= 1
    assert moved("scopegate_cache_lookups_total", cache="credentials_user",
                 result="miss") >= 1
    assert moved("scopegate_cache_lookups_total", cache="orgs", result="hit") >= 1
    # Labels stay few: the raw path never appears.
    assert "/no/such/page" not in client.get("/metrics").text
    assert "acme" not in client.get("/metrics").text


def test_mints_and_approvals_are_counted(client: TestClient, db, world: World) -> None:
    owner = user_token(db, World.email("owner"), {"org:read", "project:read", "event:read",
                                                 "event:write"})
    db.commit()
    before = samples(client.get("/metrics").text)
    agent_token_for(client, bearer(owner), sessionId="metrics-1")
    csrf = login(client, World.email("owner"))
    assert approve_via_api(client, csrf, ["event:write"], session="metrics-1"
                           ).status_code == 201
    agent_token_for(client, bearer(owner), sessionId="metrics-1")  # now with the grant
    after = samples(client.get("/metrics").text)
    assert value(after, "scopegate_agent_token_mints_total", kind="read") - value(
        before, "scopegate_agent_token_mints_total", kind="read") == 1
    assert value(after, "scopegate_agent_token_mints_total", kind="write") - value(
        before, "scopegate_agent_token_mints_total", kind="write") == 1
    assert value(after, "scopegate_approvals_total", decision="approve") - value(
        before, "scopegate_approvals_total", decision="approve") == 1


def _healthz_count(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    return value(samples(text), "scopegate_http_requests_total", route="/healthz",
                 method="GET", status="200")


def _poll_count(url: str, expected: float) -> float:
    deadline = time.monotonic() + DEADLINE_SECONDS
    seen = _healthz_count(url)
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = _healthz_count(url)
    return seen


def test_two_processes_sharing_the_directory_are_summed(tmp_path: Path,
                                                        sqlite_template: Path) -> None:
    database = tmp_path / "shared.db"
    database.write_bytes(sqlite_template.read_bytes())
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {"SCOPEGATE_DATABASE_URL": f"sqlite:///{database}", "SCOPEGATE_SECRET_KEY": SECRET,
           "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    a = spawn_scopegate("metrics-a", env, tmp_path)
    b = spawn_scopegate("metrics-b", env, tmp_path)
    with running(a, b):
        wait_ready([a, b])
        for _ in range(7):
            assert httpx.get(a.url("/healthz")).status_code == 200
        for _ in range(3):
            assert httpx.get(b.url("/healthz")).status_code == 200
        # Each process writes its own files; a scrape of either reads them all.
        assert _poll_count(b.base_url, 10) == 10
        assert _poll_count(a.base_url, 10) == 10
    assert len(list(shared.glob("*.db"))) >= 2


def test_serve_with_two_workers_answers_for_both(tmp_path: Path, sqlite_template: Path) -> None:
    database = tmp_path / "serve.db"
    database.write_bytes(sqlite_template.read_bytes())
    port = free_port()
    env = scopegate_env({"SCOPEGATE_DATABASE_URL": f"sqlite:///{database}",
                         "SCOPEGATE_SECRET_KEY": SECRET,
                         "SCOPEGATE_BASE_URL": f"http://{HOST}:{port}"},
                        drop=("PROMETHEUS_MULTIPROC_DIR",))
    server = spawn("serve", [sys.executable, "-m", "scopegate.cli.main", "serve", "--host", HOST,
                             "--port", str(port), "--workers", "2"],
                   port=port, env=env, log=tmp_path / "serve.log", cwd=tmp_path)
    with running(server):
        wait_ready([server], "/healthz")
        for _ in range(20):  # a new connection each: spread over the workers
            response = httpx.get(server.url("/healthz"), headers={"Connection": "close"})
            assert response.status_code == 200
        # Every scrape, whichever worker answers it, counts all 21 /healthz answers
        # (the readiness poll's one included).
        for _ in range(5):
            assert _poll_count(server.base_url, 21) == 21
    assert "Started server process" in (tmp_path / "serve.log").read_text()

