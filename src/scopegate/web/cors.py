"""CORS for what browser-based MCP clients call: the OAuth endpoints, the discovery
documents and ``/mcp``, for the configured origins only (``SCOPEGATE_MCP_CORS_ORIGINS``,
default none). Pages and the API send no CORS headers at all.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

CORS_PATHS = ("/oauth/", "/.well-known/oauth-", "/mcp")


class OAuthCorsMiddleware:
    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self._app = app
        self._cors = CORSMiddleware(
            app, allow_origins=list(origins), allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Mcp-Session-Id",
                           "MCP-Protocol-Version", "Last-Event-ID"],
            expose_headers=["WWW-Authenticate", "Mcp-Session-Id"], max_age=600)
        self._enabled = bool(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self._enabled and scope["type"] == "http"
                and scope["path"].startswith(CORS_PATHS)):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)
