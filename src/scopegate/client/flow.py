"""The agent client's decisions, with no I/O: one generator per API request.

The sync and the async client drive the same generator (``auth.py``), so every decision
(when to mint, what a refusal means, when the wait for the person is over, what is retried
and how often) is written once. The generator yields steps, and is sent each outcome:

- ``Send(request)``: send it, send back the ``httpx.Response``;
- ``Notify(approval)``: hand it to the ``on_approval`` callback, send back anything;
- ``Sleep(seconds)``: sleep, send back anything.

Its return value is the response to hand the caller, always the last one it was sent (so
an ``httpx.Auth`` flow, whose caller gets the last response, returns the same thing).
Failures it cannot express as a response (minting refused, the wait timed out) are raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from scopegate.client.errors import Approval, ApprovalTimeout, GrantStatusError, MintError

log = logging.getLogger("scopegate.client")

API_PATH = "/api/0/"
#: Grant-status answers meaning "not yet": no grant (404) or a passing server hiccup.
NOT_YET = frozenset({404, 429, 500, 502, 503, 504})
_ERROR_CHARS = 200


@dataclass(frozen=True)
class Options:
    """One agent session's settings; see ``AgentClient`` for what each means."""

    server_url: str
    credential: str = field(repr=False)
    org: str
    session_id: str
    agent: str | None = None
    audience: str | None = None
    api_url: str | None = None
    requested_scopes: frozenset[str] | None = None
    ttl_seconds: int | None = None
    approval_timeout: float = 300.0
    poll_interval: float = 1.0
    refresh_margin: float = 30.0

    def __post_init__(self) -> None:
        server = self.server_url.rstrip("/")
        if httpx.URL(server).scheme not in ("http", "https"):
            raise ValueError("server_url must be an absolute http(s) URL")
        if not self.credential or not self.org or not self.session_id:
            raise ValueError("credential, org and session_id must not be empty")
        if self.approval_timeout < 0 or self.poll_interval <= 0 or self.refresh_margin < 0:
            raise ValueError("approval_timeout and refresh_margin must be >= 0, "
                             "poll_interval > 0")
        api = (self.api_url or server + API_PATH).rstrip("/") + "/"
        if httpx.URL(api).scheme not in ("http", "https"):
            raise ValueError("api_url must be an absolute http(s) URL")
        object.__setattr__(self, "server_url", server)
        object.__setattr__(self, "api_url", api)

    def org_url(self, tail: str) -> str:
        """A URL of scopegate's own API under this organization (minting, grant status:
        always scopegate's, whatever ``api_url`` the calls go to)."""
        return f"{self.server_url}{API_PATH}organizations/{quote(self.org, safe='')}/{tail}"


@dataclass(frozen=True)
class AgentToken:
    """A minted agent token; ``expires_at`` in Unix seconds. The value never prints."""

    value: str = field(repr=False)
    expires_at: float
    scopes: frozenset[str]


@dataclass(frozen=True)
class Send:
    """Send ``request``. Answers from scopegate itself (``read_always``) are read whole;
    the API's only when the flow must look inside (401, 403), so others can stream."""

    request: httpx.Request
    read_always: bool = False

    def wants_body(self, status: int) -> bool:
        return self.read_always or status in (401, 403)


@dataclass(frozen=True)
class Notify:
    approval: Approval


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Send | Notify | Sleep
Flow = Generator[Step, Any, httpx.Response]


class AgentSession:
    """One agent session's state (its current token, the scopes approved so far) and the
    flow that every request runs through. Shared by concurrent requests: two may mint at
    the same moment, which costs a mint and nothing else."""

    def __init__(self, options: Options, *, notify: bool,
                 wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self._notify = notify
        self._wall = wall
        self._monotonic = monotonic
        self._token: AgentToken | None = None
        self._approved: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        o = self.options
        return f"AgentSession(server={o.server_url!r}, org={o.org!r}, session={o.session_id!r})"

    @property
    def scopes(self) -> frozenset[str]:
        """The current token's scopes (empty before the first mint)."""
        return self._token.scopes if self._token is not None else frozenset()

    # --- where requests may go -----------------------------------------------------------

    def resolve(self, path_or_url: str | httpx.URL) -> httpx.URL:
        """A path (leading ``/`` or not) under ``api_url``, or an absolute URL there."""
        base = httpx.URL(self.options.api_url or "")
        url = httpx.URL(path_or_url)
        if url.is_relative_url:
            url = base.copy_with(raw_path=base.raw_path + url.raw_path.lstrip(b"/"))
        self.check_target(url)
        return url

    def check_target(self, url: httpx.URL) -> None:
        """The agent token goes only to the API it was minted for."""
        base = httpx.URL(self.options.api_url or "")
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port) or \
                not url.raw_path.startswith(base.raw_path):
            raise ValueError("the agent client only calls URLs under its api_url")

    # --- the flow ------------------------------------------------------------------------

    def flow(self, request: httpx.Request) -> Flow:
        """Send ``request`` with a fresh agent token; once re-mint on 401; once wait for an
        approval on ``insufficient_scope``; return the final answer."""
        self.check_target(request.url)
        token = yield from self._current()
        response = yield self._authorized(request, token)
        if response.status_code == 401:  # revoked or expired server side: try a new one
            token = yield from self._mint()
            response = yield self._authorized(request, token)
        approval = self.approval_in(response)
        if approval is None or not self._notify:
            return response
        deadline = self._monotonic() + self.options.approval_timeout
        yield Notify(approval)
        yield from self._wait(approval, deadline)
        self._approved |= frozenset(approval.scopes)
        token = yield from self._mint()
        return (yield self._authorized(request, token))

    def _authorized(self, request: httpx.Request, token: AgentToken) -> Send:
        request.headers["Authorization"] = f"Bearer {token.value}"
        return Send(request)

    def _current(self) -> Generator[Step, Any, AgentToken]:
        token = self._token
        if token is None or token.expires_at - self.options.refresh_margin <= self._wall():
            token = yield from self._mint()
        return token

    def _mint(self) -> Generator[Step, Any, AgentToken]:
        response = yield Send(self._mint_request(), read_always=True)
        token = self._parse_mint(response)
        self._token = token
        log.debug("minted an agent token for session %s in %s: %s, valid %.0f s",
                  self.options.session_id, self.options.org, " ".join(sorted(token.scopes)),
                  token.expires_at - self._wall())
        return token

    def _wait(self, approval: Approval, deadline: float) -> Generator[Step, Any, None]:
        """Poll the grant status until it covers the approval; at least once, however
        long the callback took (it may have been the person approving)."""
        while True:
            response = yield Send(self._person_request(
                "GET", f"agent/sessions/{quote(self.options.session_id, safe='')}/grant/"),
                read_always=True)
            status = response.status_code
            if status == 200 and set(approval.scopes) <= _scopes_of(response):
                log.debug("approval of %s for session %s seen", " ".join(approval.scopes),
                          approval.session_id)
                return
            if status != 200 and status not in NOT_YET:
                raise GrantStatusError(status, approval)
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise ApprovalTimeout(approval, self.options.approval_timeout)
            yield Sleep(min(self.options.poll_interval, remaining))

    # --- scopegate's answers -------------------------------------------------------------

    def approval_in(self, response: httpx.Response) -> Approval | None:
        """The approval hint of an ``insufficient_scope`` refusal, if it has a usable one:
        for this session, on this scopegate server (an API that is not scopegate must not
        send the person to a page of its choosing)."""
        if response.status_code != 403:
            return None
        body = _json(response)
        hint = body.get("approval") if isinstance(body, dict) else None
        if not isinstance(hint, dict) or body.get("error") != "insufficient_scope":
            return None
        url, scopes = hint.get("url"), hint.get("scopes")
        if not (isinstance(url, str) and isinstance(scopes, list) and scopes
                and all(isinstance(s, str) for s in scopes)
                and hint.get("sessionId") == self.options.session_id):
            return None
        if not url.startswith(self.options.server_url + "/"):
            log.warning("ignored an approval URL that is not on the scopegate server %s",
                        self.options.server_url)
            return None
        return Approval(url=url, scopes=tuple(scopes), session_id=self.options.session_id)

    def _mint_request(self) -> httpx.Request:
        o = self.options
        body: dict[str, Any] = {"sessionId": o.session_id}
        if o.agent is not None:
            body["agent"] = o.agent
        if o.audience is not None:
            body["audience"] = o.audience
        if o.requested_scopes is not None:
            body["requestedScopes"] = sorted(o.requested_scopes | self._approved)
        if o.ttl_seconds is not None:
            body["ttlSeconds"] = o.ttl_seconds
        return self._person_request("POST", "agent/token/", json=body)

    def _person_request(self, method: str, tail: str, **kwargs: Any) -> httpx.Request:
        """A request to scopegate with the person's credential."""
        headers = {"Authorization": f"Bearer {self.options.credential}",
                   "Accept": "application/json"}
        return httpx.Request(method, self.options.org_url(tail), headers=headers, **kwargs)

    def _parse_mint(self, response: httpx.Response) -> AgentToken:
        if response.status_code not in (200, 201):
            raise MintError(response.status_code, self._error_of(response))
        body = _json(response)
        try:
            expires = datetime.fromisoformat(body["expiresAt"])
            token = body["token"]
            scopes = frozenset(body.get("scopes") or ())
            if not isinstance(token, str) or not token:
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise MintError(response.status_code, "malformed mint answer") from None
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return AgentToken(value=token, expires_at=expires.timestamp(), scopes=scopes)

    def _error_of(self, response: httpx.Response) -> str | None:
        """scopegate's error code or detail, short, and never the person's credential."""
        body = _json(response)
        if not isinstance(body, dict):
            return None
        text = body.get("error") or body.get("detail")
        if not isinstance(text, str):
            return None
        return text[:_ERROR_CHARS].replace(self.options.credential, "[redacted]")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _scopes_of(response: httpx.Response) -> set[str]:
    body = _json(response)
    scopes = body.get("scopes") if isinstance(body, dict) else None
    return {s for s in scopes if isinstance(s, str)} if isinstance(scopes, list) else set()
