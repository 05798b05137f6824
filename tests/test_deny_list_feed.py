"""The agent deny list feed (``GET /oauth/agent-deny-list``), in process, on SQLite and
PostgreSQL: only a resource server's credential reads it; a revocation's deny key (derived
by ``scopegate.core.deny_keys``, as a guard derives it from a token's claims) appears with
its ``revoked_at``; ``since`` filters, oldest first; paging with ``more``; a bad ``since``
is 400, never a 500."""

from __future__ import annotations

import base64
import time
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from scopegate.core import deny_keys
from scopegate.services import credentials, deny_list, directory, resource_servers
from scopegate.services.oauth.clients import NewClient
from scopegate.services.resource_servers import NewResourceServer
from scopegate.store import kv
from scopegate.store.models import KVEntry
from scopegate.store.types import utcnow
from support.http import bearer
from support.world import World

FEED = "/oauth/agent-deny-list"
MEMBER = World.email("member")


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def rs(session: Session, oauth_app: FastAPI, people: World) -> NewResourceServer:
    new = resource_servers.register(session, oauth_app.state.runtime.settings,
                                    "https://issues.example.com/", "Issues")
    session.commit()
    return new


def read_feed(web: TestClient, rs: NewResourceServer, **params: object):
    return web.get(FEED, params=params, headers=basic(rs.client_id, rs.client_secret))


def write_entries(session: Session, oauth_app: FastAPI, revoked_at: list[int]) -> list[str]:
    """Deny entries written at chosen moments (the kv rows ``DenyList`` writes)."""
    ttl = oauth_app.state.runtime.deny_list.ttl_seconds
    keys = [deny_keys.session_key(1, 1, f"s{t}") for t in revoked_at]
    for key, moment in zip(keys, revoked_at, strict=True):
        kv.write(session, key, str(moment), ttl)
    session.commit()
    return keys


# -- authentication ------------------------------------------------------------------------

@pytest.mark.parametrize("presented", [
    "none", "wrong-secret", "unknown-client", "oauth-app", "bearer", "not-utf8", "not-base64",
    "no-secret",
])
def test_only_a_resource_server_credential_reads_the_feed(
        web: TestClient, rs: NewResourceServer, confidential: NewClient,
        session: Session, presented: str) -> None:
    person = credentials.create_user_token(
        session, directory.get_user_by_email(session, MEMBER), frozenset({"event:read"}))
    session.commit()
    headers = {
        "none": {},
        "wrong-secret": basic(rs.client_id, rs.client_secret[:-1]),
        "unknown-client": basic("nobody-at-all", rs.client_secret),
        "oauth-app": basic(confidential.client.client_id, confidential.client_secret or ""),
        "bearer": bearer(person.token),
        "not-utf8": {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
        "not-base64": {"Authorization": "Basic %%%"},
        "no-secret": {"Authorization": "Basic " + base64.b64encode(
            rs.client_id.encode()).decode()},
    }[presented]
    answer = web.get(FEED, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json() == {"error": "invalid_client"}
    assert answer.headers["www-authenticate"].startswith("Basic")
    assert "entries" not in answer.text


def test_a_resource_server_reads_the_feed_uncached(web: TestClient, oauth_app: FastAPI,
                                                   rs: NewResourceServer) -> None:
    before = int(time.time())
    answer = read_feed(web, rs)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["entries"] == [] and body["more"] is False
    assert before <= body["now"] <= int(time.time())
    assert body["bound_seconds"] == oauth_app.state.runtime.settings.cache_seconds


def test_a_removed_resource_server_no_longer_reads_the_feed(
        web: TestClient, oauth_app: FastAPI, session: Session,
        rs: NewResourceServer) -> None:
    resource_servers.remove(session, oauth_app.state.runtime.deny_list, rs.audience)
    session.commit()
    assert read_feed(web, rs).status_code == 401


# -- what it lists ----------------------------------------------------------------------------

def test_a_revoked_agent_session_and_parent_appear_with_their_revocation_time(
        web: TestClient, oauth_app: FastAPI, session: Session, people: World,
        rs: NewResourceServer) -> None:
    person = credentials.create_user_token(
        session, directory.get_user_by_email(session, MEMBER), frozenset({"event:read"}))
    session.commit()
    before = int(time.time())
    revoked = web.delete("/api/0/organizations/acme/agent/sessions/agent-7/",
                         headers=bearer(person.token))
    assert revoked.status_code == 204, revoked.text
    credentials.revoke_user_token(session, oauth_app.state.runtime.deny_list,
                                  people.users["member"], person.row.id)
    session.commit()
    after = int(time.time())

    entries = {e["key"]: e["revoked_at"] for e in read_feed(web, rs).json()["entries"]}
    session_key = deny_keys.session_key(people.orgs["acme"], people.users["member"], "agent-7")
    parent_key = deny_keys.parent_key(
        credentials.user_token_ref(person.row.id, person.row.token_hash))
    assert set(entries) == {session_key, parent_key}
    assert all(before <= moment <= after for moment in entries.values())
    # The raw session id and credential reference never travel.
    text = read_feed(web, rs).text
    assert "agent-7" not in text and "user_token:" not in text


def test_since_filters_and_entries_come_oldest_first(
        web: TestClient, oauth_app: FastAPI, session: Session, rs: NewResourceServer) -> None:
    now = int(time.time())
    keys = write_entries(session, oauth_app, [now - 30, now - 10, now - 20])
    # Neither an expired entry nor another kv value is listed.
    session.add(KVEntry(key=deny_keys.parent_key("gone"), value=str(now - 5),
                        expires_at=utcnow() - timedelta(seconds=1)))
    session.add(KVEntry(key="other:thing", value="not a number",
                        expires_at=utcnow() + timedelta(hours=1)))
    session.commit()

    every = read_feed(web, rs).json()["entries"]
    assert [e["key"] for e in every] == [keys[0], keys[2], keys[1]]
    assert [e["revoked_at"] for e in every] == [now - 30, now - 20, now - 10]
    later = read_feed(web, rs, since=now - 20).json()["entries"]
    assert [e["revoked_at"] for e in later] == [now - 20, now - 10]
    assert read_feed(web, rs, since=now - 9).json()["entries"] == []
    assert len(read_feed(web, rs, since=0).json()["entries"]) == 3


def test_paging_says_more_until_the_last_page(
        oauth_app: FastAPI, session: Session, rs: NewResourceServer) -> None:
    now = int(time.time())
    moments = [now - 50, now - 40, now - 30, now - 20, now - 10]
    write_entries(session, oauth_app, moments)
    seen: list[int] = []
    since, pages = 0, 0
    with oauth_app.state.runtime.engine.connect() as conn:
        while True:
            page, more = deny_list.entries_since(conn, since, limit=2)
            pages += 1
            seen += [e.revoked_at for e in page if e.revoked_at not in seen]
            if not more:
                break
            since = page[-1].revoked_at
    assert seen == moments
    assert pages == 4  # 2, 2 (one again), 2 (one again), 1
    assert deny_list.entries_since(session, now - 10, limit=1) == (
        [deny_list.DenyEntry(deny_keys.session_key(1, 1, f"s{now - 10}"), now - 10)], False)


@pytest.mark.parametrize("since", [
    "-1", "abc", "1.5", "1e3", " 5", "+5", "0x10", str(2**40 + 1), "9" * 14, "",
])
def test_a_bad_since_is_400(web: TestClient, rs: NewResourceServer, since: str) -> None:
    answer = read_feed(web, rs, since=since)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request"
    assert since.strip() == "" or since not in answer.json()["error_description"]


def test_since_at_its_bounds_and_sent_twice(web: TestClient, rs: NewResourceServer) -> None:
    assert read_feed(web, rs, since=2**40).status_code == 200
    assert read_feed(web, rs, since=0).status_code == 200
    twice = web.get(f"{FEED}?since=1&since=2", headers=basic(rs.client_id, rs.client_secret))
    assert twice.status_code == 400
    huge = web.get(f"{FEED}?since={'1' * 5000}", headers=basic(rs.client_id, rs.client_secret))
    assert huge.status_code == 400


def test_the_feed_is_in_the_openapi_document_with_its_parameter(web: TestClient) -> None:
    operation = web.get("/openapi.json").json()["paths"][FEED]["get"]
    (since,) = operation["parameters"]
    assert since["name"] == "since" and since["in"] == "query"
    assert since["schema"]["type"] == "integer" and since["schema"]["maximum"] == 2**40
