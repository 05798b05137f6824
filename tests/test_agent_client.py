"""``scopegate.client`` against a real scopegate on loopback (uvicorn on a thread).

The person approves with plain HTTP from a logged-in browser session (login form, CSRF);
``test_agent_client_browser.py`` has the same loop with Chromium. A recording transport
shows what the client sent: which credential went where, and each request's body.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import httpx
import pytest

import spec
from scopegate.client import (
    AgentClient,
    Approval,
    ApprovalTimeout,
    AsyncAgentClient,
    GrantStatusError,
    MintError,
)
from support.agent import approve_via_api
from support.http import login
from support.live_server import LiveServer
from support.world import World, build_world_quick, user_token

MEMBER = World.email("member")
MEMBER_READS = spec.READ_SCOPES & spec.ROLE_SCOPES["member"]
ISSUES = "organizations/acme/issues/"
GRANT = "/agent/sessions/{session}/grant/"


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    authorization: str
    body: bytes


class Recorder(httpx.BaseTransport):
    """A real transport that notes every request it sends."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[Sent] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(Sent(request.method, request.url.path,
                              request.headers.get("authorization", ""), request.read()))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def mints(self) -> list[Sent]:
        return [s for s in self.sent if s.path.endswith("/agent/token/")]

    def api_tokens(self) -> list[str]:
        """The bearer tokens of every request that was not a mint or a grant poll."""
        return [s.authorization.removeprefix("Bearer ") for s in self.sent
                if not s.path.endswith(("/agent/token/", "/grant/"))]


class AsyncRecorder(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[Sent] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(Sent(request.method, request.url.path,
                              request.headers.get("authorization", ""), await request.aread()))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Setup:
    server: LiveServer
    world: World
    person: str

    def agent(self, session_id: str, **options: object) -> AgentClient:
        options.setdefault("agent", "test-agent")
        return AgentClient(self.server.base_url, self.person, org="acme",
                           session_id=session_id, **options)  # type: ignore[arg-type]

    def issue(self, index: int = 0) -> str:
        return f"organizations/acme/issues/{self.world.issue_ids[index]}/"

    def approve(self, approval: Approval) -> None:
        """The person, logged in with a browser session, approves over plain HTTP."""
        with httpx.Client(base_url=self.server.base_url, timeout=10) as browser:
            csrf = login(browser, MEMBER)  # type: ignore[arg-type]
            approved = approve_via_api(browser, csrf, list(approval.scopes),  # type: ignore[arg-type]
                                       session=approval.session_id, agent="test-agent")
            assert approved.status_code == 201, approved.text


@pytest.fixture
def setup(server: LiveServer) -> Setup:
    with server.app.state.runtime.factory() as db:
        world = build_world_quick(db)
        person = user_token(db, MEMBER, spec.ROLE_SCOPES["member"])
    return Setup(server, world, person)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recording = Recorder()
    yield recording
    recording.close()


# --- minting and reading --------------------------------------------------------------


def test_mints_a_read_only_token_and_reads(setup: Setup, recorder: Recorder) -> None:
    with setup.agent("c-read", transport=recorder) as agent:
        listed = agent.get(ISSUES)
        again = agent.get("/" + ISSUES, params={"query": "is:unresolved"})
    assert listed.status_code == 200, listed.text
    assert {row["id"] for row in listed.json()} == {str(i) for i in setup.world.issue_ids}
    assert again.status_code == 200, again.text
    assert agent.scopes == MEMBER_READS
    [mint] = recorder.mints()  # the second call reused the token
    assert mint.authorization == f"Bearer {setup.person}"
    tokens = recorder.api_tokens()
    assert len(tokens) == 2 and tokens[0] == tokens[1] and tokens[0].startswith("sga_")
    assert all(setup.person not in s.authorization for s in recorder.sent
               if not s.path.endswith("/agent/token/"))


def test_requested_scopes_narrow_the_token(setup: Setup, recorder: Recorder) -> None:
    with setup.agent("c-narrow", requested_scopes=["event:read"], transport=recorder) as agent:
        assert agent.get(ISSUES).status_code == 200
        assert agent.scopes == {"event:read"}
        assert agent.get("organizations/acme/").status_code == 403  # org:read left out


def test_a_token_expiring_within_the_margin_is_minted_anew(
    setup: Setup, recorder: Recorder
) -> None:
    # A 30 s token with a 60 s margin is always "about to expire": every call mints.
    with setup.agent("c-refresh", ttl_seconds=30, refresh_margin=60,
                     transport=recorder) as agent:
        for _ in range(3):
            assert agent.get(ISSUES).status_code == 200
    assert len(recorder.mints()) == 3
    tokens = recorder.api_tokens()
    assert len(set(tokens)) == 3, "each call must carry a newly minted token"


def test_a_revoked_token_is_replaced_once(setup: Setup, recorder: Recorder) -> None:
    with setup.agent("c-revoked", transport=recorder) as agent:
        assert agent.get(ISSUES).status_code == 200
        revoked = httpx.delete(
            setup.server.url("/api/0/organizations/acme/agent/sessions/c-revoked/"),
            headers={"Authorization": f"Bearer {setup.person}"}, timeout=10)
        assert revoked.status_code == 204, revoked.text
        # Tokens issued in the second of the revocation stay refused: start a new one.
        time.sleep(1.01 - time.time() % 1)
        listed = agent.get(ISSUES)
    assert listed.status_code == 200, listed.text
    first, refused, retried = recorder.api_tokens()
    assert first == refused != retried
    assert len(recorder.mints()) == 2


def test_a_bad_person_credential_raises_mint_error(setup: Setup) -> None:
    agent = AgentClient(setup.server.base_url, "sgu_" + "x" * 40, org="acme",
                        session_id="c-bad")
    with agent, pytest.raises(MintError) as raised:
        agent.get(ISSUES)
    assert raised.value.status == 401
    assert "sgu_" not in str(raised.value)


def test_only_urls_under_the_api_get_the_token(setup: Setup) -> None:
    with setup.agent("c-where") as agent:
        with pytest.raises(ValueError, match="api_url"):
            agent.get("http://127.0.0.1:9/api/0/organizations/acme/issues/")
        with pytest.raises(ValueError, match="api_url"):
            agent.get(setup.server.url("/login"))
        assert agent.get(setup.server.url("/api/0/" + ISSUES)).status_code == 200


# --- refusals returned as they are ------------------------------------------------------


def test_a_refusal_without_an_approval_hint_is_returned_as_is(setup: Setup) -> None:
    asked: list[Approval] = []
    with setup.agent("c-nohint", on_approval=asked.append) as agent:
        # org:write is beyond a member's role: nobody can approve it for this agent.
        refused = agent.put("organizations/acme/", json={"name": "Renamed"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "insufficient_scope"
    assert refused.json()["approval"] is None
    assert asked == []


def test_without_a_callback_the_hinted_refusal_is_returned(setup: Setup) -> None:
    with setup.agent("c-nocallback") as agent:
        refused = agent.put(setup.issue(), json={"status": "resolved"})
    assert refused.status_code == 403
    assert refused.json()["approval"]["scopes"] == ["event:write"]


# --- the approval loop ------------------------------------------------------------------


def test_the_approval_loop_waits_for_the_grant_then_retries(
    setup: Setup, recorder: Recorder
) -> None:
    asked: list[Approval] = []

    def later(approval: Approval) -> None:
        """The person approves a moment after being asked: the client polls meanwhile."""
        asked.append(approval)
        threading.Timer(0.4, setup.approve, args=(approval,)).start()

    with setup.agent("c-loop", on_approval=later, poll_interval=0.05,
                     transport=recorder) as agent:
        resolved = agent.put(setup.issue(), json={"status": "resolved"})
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["status"] == "resolved"
        assert "event:write" in agent.scopes
        # The next write needs no approval: the new token carries the grant.
        assert agent.put(setup.issue(1), json={"status": "resolved"}).status_code == 200

    [approval] = asked
    assert approval.scopes == ("event:write",)
    assert approval.session_id == "c-loop"
    assert approval.url.startswith(setup.server.url("/organizations/acme/agent/approve?"))
    polls = [s for s in recorder.sent if s.path.endswith(GRANT.format(session="c-loop"))]
    assert len(polls) >= 2, "the grant did not exist at first: the client must have waited"
    assert all(p.authorization == f"Bearer {setup.person}" for p in polls)
    assert len(recorder.mints()) == 2


def test_the_async_approval_loop(setup: Setup) -> None:
    asked: list[Approval] = []

    async def approve(approval: Approval) -> None:
        asked.append(approval)
        await anyio.to_thread.run_sync(setup.approve, approval)

    async def run() -> httpx.Response:
        recorder = AsyncRecorder()
        async with AsyncAgentClient(setup.server.base_url, setup.person, org="acme",
                                    session_id="c-async", agent="test-agent",
                                    on_approval=approve, poll_interval=0.05,
                                    transport=recorder) as agent:
            listed = await agent.get(ISSUES)
            assert listed.status_code == 200
            return await agent.put(setup.issue(), json={"status": "resolved"})

    resolved = asyncio.run(run())
    assert resolved.status_code == 200, resolved.text
    assert [a.scopes for a in asked] == [("event:write",)]


def test_a_sync_callback_works_in_the_async_client(setup: Setup) -> None:
    async def run() -> httpx.Response:
        async with AsyncAgentClient(setup.server.base_url, setup.person, org="acme",
                                    session_id="c-async-sync", agent="test-agent",
                                    on_approval=setup.approve, poll_interval=0.05) as agent:
            return await agent.put(setup.issue(), json={"status": "resolved"})

    assert asyncio.run(run()).status_code == 200


def test_the_retried_request_replays_its_body(setup: Setup, recorder: Recorder) -> None:
    """A streamed body (read once by the client) goes out whole on the retry too."""
    body = b'{"version": "2.0.0", "projects": ["web"]}'
    chunks = iter([body[:10], body[10:]])
    with setup.agent("c-body", on_approval=setup.approve, poll_interval=0.05,
                     transport=recorder) as agent:
        created = agent.post("organizations/acme/releases/", content=chunks,
                             headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    assert created.json()["version"] == "2.0.0"
    posts = [s for s in recorder.sent if s.method == "POST" and s.path.endswith("/releases/")]
    assert len(posts) == 2 and posts[0].body == posts[1].body == body
    assert posts[0].authorization != posts[1].authorization


class RevokingRecorder(Recorder):
    """Revokes the agent session just before the retried write goes out, as the person
    might between approving and the agent's retry."""

    def __init__(self, setup: Setup, session_id: str) -> None:
        super().__init__()
        self.setup, self.session_id, self.puts = setup, session_id, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.puts += 1
            if self.puts == 2:
                revoked = httpx.delete(self.setup.server.url(
                    f"/api/0/organizations/acme/agent/sessions/{self.session_id}/"),
                    headers={"Authorization": f"Bearer {self.setup.person}"}, timeout=10)
                assert revoked.status_code == 204, revoked.text
        return super().handle_request(request)


def test_the_retry_is_returned_even_when_refused_again(setup: Setup) -> None:
    """One approval, one retry: whatever the retry gets comes back, with no more mints."""
    recorder = RevokingRecorder(setup, "c-twice")
    with setup.agent("c-twice", on_approval=setup.approve, poll_interval=0.05,
                     transport=recorder) as agent:
        refused = agent.put(setup.issue(), json={"status": "resolved"})
    assert refused.status_code == 401, refused.text
    assert recorder.puts == 2
    assert len(recorder.mints()) == 2


def test_no_approval_in_time_raises_approval_timeout(setup: Setup) -> None:
    asked: list[Approval] = []
    started = time.monotonic()
    with setup.agent("c-timeout", on_approval=asked.append, approval_timeout=0.2,
                     poll_interval=0.05) as agent, pytest.raises(ApprovalTimeout) as raised:
        agent.put(setup.issue(), json={"status": "resolved"})
    assert time.monotonic() - started < 5
    assert raised.value.approval == asked[0]
    assert raised.value.approval.scopes == ("event:write",)
    assert isinstance(raised.value, TimeoutError)


def test_a_poll_the_person_may_not_make_raises(setup: Setup) -> None:
    """The poll with a credential refused at the grant-status endpoint (an org token may
    not mint either; here: the person's token revoked after the first mint)."""
    def revoke_person(approval: Approval) -> None:
        tokens = httpx.get(setup.server.url("/api/0/api-tokens/"), timeout=10,
                           headers={"Authorization": f"Bearer {setup.person}"})
        for row in tokens.json():
            httpx.delete(setup.server.url(f"/api/0/api-tokens/{row['id']}/"), timeout=10,
                         headers={"Authorization": f"Bearer {setup.person}"})

    with setup.agent("c-poll-refused", on_approval=revoke_person,
                     poll_interval=0.05) as agent, pytest.raises(GrantStatusError) as raised:
        agent.put(setup.issue(), json={"status": "resolved"})
    assert raised.value.status == 401


class ForeignApi(httpx.BaseTransport):
    """Loopback scopegate for minting; ``api.invalid`` is another service, which answers
    every call with a refusal whose approval URL points elsewhere."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != "api.invalid":
            return self.inner.handle_request(request)
        return httpx.Response(403, json={
            "error": "insufficient_scope", "scope": "event:write",
            "approval": {"url": "https://phish.invalid/approve", "scopes": ["event:write"],
                         "sessionId": "c-foreign"}})

    def close(self) -> None:
        self.inner.close()


def test_an_approval_url_off_the_scopegate_server_is_ignored(setup: Setup) -> None:
    asked: list[Approval] = []
    with setup.agent("c-foreign", api_url="http://api.invalid/v1/", transport=ForeignApi(),
                     on_approval=asked.append) as agent:
        refused = agent.get("things/")
    assert refused.status_code == 403
    assert asked == []


def test_the_sync_client_refuses_an_async_callback(setup: Setup) -> None:
    async def approve(approval: Approval) -> None:
        raise AssertionError("never awaited")

    with setup.agent("c-async-cb", on_approval=approve) as agent, \
            pytest.raises(TypeError, match="AsyncAgentClient"):
        agent.put(setup.issue(), json={"status": "resolved"})


# --- secrets ----------------------------------------------------------------------------


def test_tokens_appear_in_no_repr_and_no_log(
    setup: Setup, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    for name in (None, "scopegate", "scopegate.client", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    with setup.agent("c-secret", on_approval=setup.approve, poll_interval=0.05,
                     transport=recorder) as agent:
        assert agent.put(setup.issue(), json={"status": "resolved"}).status_code == 200
        shown = [repr(agent), str(agent), repr(agent._session), repr(agent._auth),
                 repr(agent._session.options), repr(agent._session._token)]
    secrets = {setup.person, *recorder.api_tokens()}
    assert len(secrets) == 3  # the person's, the read-only token, the writer
    for secret in secrets:
        for text in shown:
            assert secret not in text, text
        for record in caplog.records:
            assert secret not in record.getMessage()
            assert secret not in str(record.args)
