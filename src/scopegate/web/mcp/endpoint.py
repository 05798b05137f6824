"""``/mcp``: the gate in front of the SDK's streamable HTTP transport.

Every request is authenticated by the runtime's one ``Gate``, for the MCP resource:
only an OAuth access token issued for ``<base>/mcp`` passes (a token for the API, a
personal token or an upstream token is ``invalid_token``). A refusal is an RFC 6750
challenge that also names the RFC 9728 metadata document and the scopes ``/mcp`` needs,
so a client can discover the authorization server from it. What passes reaches the SDK
with the principal in the ASGI scope: the tools read it from the request, and where
sessions are held in memory (``SCOPEGATE_MCP_PROCESS_SESSIONS``) the SDK binds each one to
the client and person that opened it.
"""

from __future__ import annotations

import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from scopegate.core import mcp_capabilities as caps
from scopegate.core.access import Principal
from scopegate.core.challenges import (
    Challenge,
    for_protected_resource,
    insufficient_scope,
    invalid_token,
    no_credentials,
)
from scopegate.core.scopes import expand
from scopegate.core.token_kinds import TokenKind
from scopegate.runtime.process import Runtime
from scopegate.services.authentication import AuthenticationFailed
from scopegate.services.gate import Presented
from scopegate.web.auth import MAX_AUTHORIZATION_HEADER
from scopegate.web.security_headers import NO_STORE

PRINCIPAL_KEY = "scopegate.principal"
BEARER_KEY = "scopegate.bearer"
MCP_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource" + MCP_PATH


def principal_of(request: Request) -> Principal:
    """The principal the gate admitted for this MCP request."""
    return request.scope["state"][PRINCIPAL_KEY]


def bearer_of(request: Request) -> str:
    """The token it presented (proxy mode opens the upstream tokens with it)."""
    return request.scope["state"][BEARER_KEY]


class McpEndpoint:
    """An ASGI app: authenticate, then hand the request to ``inner`` (the SDK)."""

    def __init__(self, rt: Runtime, inner: ASGIApp) -> None:
        self._rt = rt
        self._inner = inner
        self._metadata_url = rt.settings.base_url + METADATA_PATH

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        outcome = await self._admit(request)
        if isinstance(outcome, Challenge):
            await self._refuse(outcome, scope, receive, send)
            return
        principal, token = outcome
        state = scope.setdefault("state", {})
        state[PRINCIPAL_KEY], state[BEARER_KEY] = principal, token
        # With sessions held in memory the SDK binds each to (client, issuer, subject): a
        # session opened by one person's client answers no other credential.
        scope["user"] = AuthenticatedUser(AccessToken(
            token=principal.credential_ref, client_id=principal.agent or "",
            scopes=sorted(principal.scopes or ()), expires_at=principal.expires_at,
            resource=principal.audience, subject=principal.session_id,
            claims={"iss": self._rt.settings.issuer},
        ))
        await self._inner(scope, receive, send)

    async def _admit(self, request: Request) -> tuple[Principal, str] | Challenge:
        settings = self._rt.settings
        realm = settings.realm
        header = request.headers.get("authorization")
        if header is None:
            return self._challenge(no_credentials(realm))
        scheme, _, token = header.strip().partition(" ")
        if (len(header) > MAX_AUTHORIZATION_HEADER or scheme.lower() != "bearer"
                or not token.strip()):
            return self._challenge(invalid_token("Use 'Authorization: Bearer <token>'.", realm))
        gate = self._rt.gate
        try:
            principal = await gate.run(lambda conn: gate.authenticate(
                Presented(bearer=token.strip()), conn, resource=settings.mcp_resource))
        except AuthenticationFailed as failure:
            return self._challenge(invalid_token(failure.description, realm))
        if principal.kind is not TokenKind.OAUTH_ACCESS or (
                principal.audience != settings.mcp_resource):
            return self._challenge(invalid_token(
                "The access token was not issued for this resource.", realm))
        if not expand(principal.scopes or frozenset()).issuperset(caps.REQUIRED_SCOPES):
            return self._challenge(insufficient_scope(caps.REQUIRED_SCOPES, realm))
        return principal, token.strip()

    def _challenge(self, challenge: Challenge) -> Challenge:
        return for_protected_resource(challenge, self._metadata_url, caps.SUPPORTED_SCOPES)

    async def _refuse(self, challenge: Challenge, scope: Scope, receive: Receive,
                      send: Send) -> None:
        response = Response(orjson.dumps(challenge.body), status_code=challenge.status,
                            media_type="application/json",
                            headers={**challenge.headers, "Cache-Control": NO_STORE})
        await response(scope, receive, send)
