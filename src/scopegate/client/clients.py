"""``AgentClient`` and ``AsyncAgentClient``: an httpx client per agent session.

Both are thin: the arguments become ``Options``, the decisions live in
``flow.AgentSession`` and httpx runs them through ``auth.AgentAuth``. What differs is
only what must: the httpx client class, ``close``/``aclose``, and ``await``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Self

import httpx

from scopegate.client.auth import AgentAuth, OnApproval
from scopegate.client.errors import Approval
from scopegate.client.flow import AgentSession, Options

DEFAULT_TIMEOUT = 10.0


def _options(server_url: str, credential: str, org: str, session_id: str,
             requested_scopes: Iterable[str] | None, **rest: Any) -> Options:
    return Options(server_url=server_url, credential=credential, org=org,
                   session_id=session_id, requested_scopes=None if requested_scopes is None
                   else frozenset(requested_scopes), **rest)


class _AgentClientBase:
    """What the two clients share: the session, its auth, and how they print."""

    def __init__(self, options: Options, on_approval: OnApproval | None) -> None:
        self._session = AgentSession(options, notify=on_approval is not None)
        self._auth = AgentAuth(self._session, on_approval)

    def __repr__(self) -> str:
        o = self._session.options
        return (f"{type(self).__name__}(server={o.server_url!r}, org={o.org!r}, "
                f"session_id={o.session_id!r}, api_url={o.api_url!r})")

    @property
    def session_id(self) -> str:
        return self._session.options.session_id

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes of the agent token in use (empty before the first request)."""
        return self._session.scopes


class AgentClient(_AgentClientBase):
    """Calls an API as an agent session of a person, synchronously.

    ``server_url``: the scopegate server. ``credential``: the person's user token
    (``sgu_``) or OAuth access token (``sgp_``): it mints agent tokens and polls the grant
    status, and goes nowhere else. ``org``: the organization's slug. ``session_id``: the
    agent session (a grant belongs to it). ``agent``: the agent's name shown to the person.
    ``audience``: mint for a registered resource server instead of scopegate's API.
    ``api_url``: where requests go (default ``<server_url>/api/0/``); a path is joined to
    it, and an absolute URL must lie under it. ``on_approval``: called with an
    ``Approval`` on ``insufficient_scope`` (without it the 403 comes back at once).
    ``approval_timeout``: seconds to wait for the grant (then ``ApprovalTimeout``).
    ``poll_interval``: seconds between grant-status polls. ``refresh_margin``: mint anew
    when the token expires within this many seconds. ``requested_scopes``/``ttl_seconds``:
    narrow the token (approved scopes are added to the request) or shorten its life.
    ``http`` (not closed by this client) or ``transport``: bring your own httpx pieces.
    """

    def __init__(
        self, server_url: str, credential: str, *, org: str, session_id: str,
        agent: str | None = None, audience: str | None = None, api_url: str | None = None,
        on_approval: Callable[[Approval], object] | None = None,
        approval_timeout: float = 300.0, poll_interval: float = 1.0,
        refresh_margin: float = 30.0, requested_scopes: Iterable[str] | None = None,
        ttl_seconds: int | None = None, http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None, timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if http is not None and transport is not None:
            raise ValueError("pass http or transport, not both")
        super().__init__(_options(
            server_url, credential, org, session_id, requested_scopes, agent=agent,
            audience=audience, api_url=api_url, ttl_seconds=ttl_seconds,
            approval_timeout=approval_timeout, poll_interval=poll_interval,
            refresh_margin=refresh_margin), on_approval)
        self._owns_http = http is None
        self._http = http or httpx.Client(transport=transport, timeout=timeout)

    def request(self, method: str, path_or_url: str | httpx.URL,
                **kwargs: Any) -> httpx.Response:
        """Send as the agent; ``kwargs`` as for ``httpx.Client.request``."""
        return self._http.request(method, self._session.resolve(path_or_url),
                                  auth=self._auth, **kwargs)

    def get(self, path_or_url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path_or_url, **kwargs)

    def post(self, path_or_url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path_or_url, **kwargs)

    def put(self, path_or_url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path_or_url, **kwargs)

    def patch(self, path_or_url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path_or_url, **kwargs)

    def delete(self, path_or_url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path_or_url, **kwargs)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class AsyncAgentClient(_AgentClientBase):
    """``AgentClient`` for asyncio (or trio): the same arguments, ``await`` the calls;
    ``on_approval`` may be sync or async."""

    def __init__(
        self, server_url: str, credential: str, *, org: str, session_id: str,
        agent: str | None = None, audience: str | None = None, api_url: str | None = None,
        on_approval: Callable[[Approval], object | Awaitable[object]] | None = None,
        approval_timeout: float = 300.0, poll_interval: float = 1.0,
        refresh_margin: float = 30.0, requested_scopes: Iterable[str] | None = None,
        ttl_seconds: int | None = None, http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None, timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if http is not None and transport is not None:
            raise ValueError("pass http or transport, not both")
        super().__init__(_options(
            server_url, credential, org, session_id, requested_scopes, agent=agent,
            audience=audience, api_url=api_url, ttl_seconds=ttl_seconds,
            approval_timeout=approval_timeout, poll_interval=poll_interval,
            refresh_margin=refresh_margin), on_approval)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(transport=transport, timeout=timeout)

    async def request(self, method: str, path_or_url: str | httpx.URL,
                      **kwargs: Any) -> httpx.Response:
        """Send as the agent; ``kwargs`` as for ``httpx.AsyncClient.request``."""
        return await self._http.request(method, self._session.resolve(path_or_url),
                                        auth=self._auth, **kwargs)

    async def get(self, path_or_url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path_or_url, **kwargs)

    async def post(self, path_or_url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path_or_url, **kwargs)

    async def put(self, path_or_url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path_or_url, **kwargs)

    async def patch(self, path_or_url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path_or_url, **kwargs)

    async def delete(self, path_or_url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path_or_url, **kwargs)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.aclose()
