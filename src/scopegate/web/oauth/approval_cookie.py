"""Proxy mode: which MCP clients this browser's person approved, and for what.

A signed cookie (itsdangerous, HMAC-SHA256 under the server secret) maps client ids to
the capabilities approved for them, for 30 days: ``__Host-`` prefixed, HttpOnly, Secure,
SameSite=Lax, path ``/`` on https; on a plain-http loopback base URL (development) the
same without the prefix and Secure, which browsers refuse there. A client not in it gets
the approval page; the callback from upstream requires the client to be in it, so a
sign-in someone else started cannot be completed in this browser.
"""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from scopegate.core import mcp_capabilities as caps
from scopegate.settings import Settings

MAX_AGE_SECONDS = 30 * 24 * 3600
#: The most clients remembered (the oldest approval is dropped first).
MAX_CLIENTS = 20
MAX_COOKIE = 3800


class ApprovalCookie:
    def __init__(self, settings: Settings) -> None:
        self._secure = settings.secure_cookies
        self.name = "__Host-sg_mcp_approved" if self._secure else "sg_mcp_approved"
        self._signer = URLSafeTimedSerializer(settings.secret(), salt="scopegate.mcp-approved")

    def read(self, request: Request) -> dict[str, frozenset[caps.Capability]]:
        value = request.cookies.get(self.name)
        if not value or len(value) > MAX_COOKIE:
            return {}
        try:
            data = self._signer.loads(value, max_age=MAX_AGE_SECONDS)
        except BadSignature:
            return {}
        approved: dict[str, frozenset[caps.Capability]] = {}
        if isinstance(data, list):
            for entry in data:
                try:
                    client_id, names = entry
                    approved[str(client_id)] = caps.parse(names)
                except (TypeError, ValueError):
                    continue
        return approved

    def approved(self, request: Request, client_id: str) -> frozenset[caps.Capability] | None:
        return self.read(request).get(client_id)

    def add(self, request: Request, response: Response, client_id: str,
            capabilities: frozenset[caps.Capability]) -> None:
        approved = self.read(request)
        approved.pop(client_id, None)
        approved[client_id] = capabilities
        entries = [[cid, sorted(c.value for c in granted)]
                   for cid, granted in list(approved.items())[-MAX_CLIENTS:]]
        value = self._signer.dumps(entries)
        while len(value) > MAX_COOKIE and len(entries) > 1:
            entries.pop(0)
            value = self._signer.dumps(entries)
        response.set_cookie(self.name, value, max_age=MAX_AGE_SECONDS, path="/",
                            httponly=True, secure=self._secure, samesite="lax")
