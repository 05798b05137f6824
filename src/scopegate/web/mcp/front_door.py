"""The MCP front door as one object the app holds: the SDK server, its session manager,
the gate in front of it, the API client its tools use, and which mode it is in.

The app's lifespan runs it (``running``): the HTTP client for API calls and the SDK's
session manager live exactly as long as the app serves.

No process holds state another needs: 2026-07-28 requests are self-contained, and the
2025 handshake revisions are served stateless too (no ``Mcp-Session-Id``), so a client
may initialize at one process and call tools at another. A server-to-client request
(``elicitation/create``) needs its answer back at the process that asked, which a fleet
cannot promise; those clients get the approval URL in a tool error instead. One process
may opt back into sessions held in memory (``SCOPEGATE_MCP_PROCESS_SESSIONS``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from scopegate.core.region_url import RegionUrlRefused, check_region_url
from scopegate.runtime.process import Runtime
from scopegate.services.keys import derived_key
from scopegate.services.mcp.api import ApiClient, ToolFailure
from scopegate.services.mcp.tools import Backend, Tools
from scopegate.services.mcp.upstream import Upstream
from scopegate.services.oauth.proxy import ProxyStates
from scopegate.web.auth import request_info
from scopegate.web.mcp.direct import DirectBackend, MintedTokens
from scopegate.web.mcp.endpoint import MCP_PATH, McpEndpoint, bearer_of, principal_of
from scopegate.web.mcp.proxy import ProxyBackend, ProxyGrants
from scopegate.web.mcp.server import build_server
from scopegate.web.oauth.approval_cookie import ApprovalCookie

MAX_SESSIONS = 10_000
SESSION_IDLE_SECONDS = 30 * 60


class FrontDoor:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        settings = rt.settings
        self.request_state_key = derived_key(settings.secret(), b"scopegate mcp request state v1")
        self._api = urlsplit(settings.mcp_api)
        self._http: httpx.AsyncClient | None = None
        self._api_client = ApiClient(self._client)
        self.tools = Tools(self._api_client)
        self._minted = MintedTokens()
        #: Proxy mode only: the upstream server, the trips to it, this browser's approvals.
        self.upstream = Upstream(settings) if settings.proxy_mode else None
        self.proxy = ProxyGrants(rt, self.upstream) if self.upstream is not None else None
        self.states = ProxyStates(settings.secret())
        self.approval_cookie = ApprovalCookie(settings)
        self.server = build_server(self)
        self._manager: StreamableHTTPSessionManager | None = None
        self.endpoint = McpEndpoint(rt, self._handle)

    # -- lifecycle -------------------------------------------------------------------
    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve until the block ends (a session manager runs once, so each run builds
        its own)."""
        base = urlsplit(self.rt.settings.base_url)
        origins = [f"{base.scheme}://{base.netloc}", *self.rt.settings.mcp_cors_origin_list]
        self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=not self.rt.settings.mcp_process_sessions,
            max_request_body_size=self.rt.settings.max_body_bytes,
            session_idle_timeout=SESSION_IDLE_SECONDS, max_sessions=MAX_SESSIONS,
            transport_security=TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=[base.netloc, *(f"{h}:*" for h in self.rt.settings.trusted_hosts),
                               *self.rt.settings.trusted_hosts],
                allowed_origins=origins),
        )
        self._manager = self.server.session_manager
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as http:
            self._http = http
            try:
                async with self._manager.run():
                    yield
            finally:
                self._http = None
                self._manager = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise ToolFailure("The server is shutting down.")
        return self._http

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._manager is None:
            raise RuntimeError("the MCP front door is not running (the app's lifespan)")
        await self._manager.handle_request(scope, receive, send)

    # -- what tools use --------------------------------------------------------------
    def backend(self, request: Request) -> Backend:
        principal = principal_of(request)
        if self.proxy is not None:
            return ProxyBackend(self.proxy, self._api_client, principal, bearer_of(request),
                                self._minted)
        return DirectBackend(self.rt, principal, self._minted, request_info(request))

    def api_base(self, region_url: str | None) -> str:
        """The API base URL a call goes to: the configured one, or the region's."""
        if region_url is None:
            return self.rt.settings.mcp_api
        try:
            origin = check_region_url(
                region_url, api_host=self._api.hostname or "",
                allowed_hosts=self.rt.settings.mcp_region_host_list)
        except RegionUrlRefused as refused:
            raise ToolFailure(f"regionUrl refused: {refused}") from None
        return origin + (self._api.path or "/")


def front_door(request: Request) -> FrontDoor:
    """The app's MCP front door."""
    return request.app.state.front_door
