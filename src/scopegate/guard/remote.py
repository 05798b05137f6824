"""``RemoteVerifier``: decide in another process than scopegate's, against its server.

A service that trusts a scopegate server registers as a resource server there
(``scopegate resource-server add AUDIENCE``) and builds ``Guard.remote(...)`` with the
credentials printed. Then, with no database:

* an agent token (``sga_``) is verified offline: EdDSA signature by a key of the
  server's JWKS (``jwks.py``), ``iss`` the server, ``aud`` this service, ``exp``/``iat``
  with the in-process leeway, its ``org_slug`` the organization asked for, and the
  deny list polled from the server (``deny_feed.py``); when that copy is stale, 503.
  Its scopes are the token's (the server capped them at mint: role, grant, parent);
* an opaque token (``sgu_ sgo_ sgi_ sgp_``) is introspected (``introspection.py``):
  inactive or for another audience, 401; the organization asked for not among the
  answer's, 404; its scopes there are the server's effective ones;
* anything else is refused (401) without asking the server; the server being
  unreachable is a 503, never an allow.

Refusals are the in-process ones: RFC 6750 challenges, and for an agent token lacking a
scope, the approval hint (``services/approval_hint.py``) pointing at the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request

from scopegate.core import scopes as registry
from scopegate.core.access import Access, OrgAccess, OrgRef, Principal
from scopegate.core.challenges import Challenge, insufficient_scope, invalid_token
from scopegate.core.permissions import ScopeMap
from scopegate.core.token_kinds import TokenKind
from scopegate.guard.deny_feed import DenyFeed
from scopegate.guard.errors import ChallengeError
from scopegate.guard.introspection import Introspected, Introspector
from scopegate.guard.jwks import JwksCache
from scopegate.guard.remote_agent import AgentTokens
from scopegate.guard.remote_http import basic_authorization
from scopegate.guard.verifier import GuardCall
from scopegate.services.approval_hint import approval_url
from scopegate.services.authentication import MAX_TOKEN_LENGTH
from scopegate.services.errors import Forbidden, NotFound

OPAQUE_KINDS = {"user": TokenKind.USER, "org": TokenKind.ORG,
                "integration": TokenKind.INTEGRATION, "oauth_access": TokenKind.OAUTH_ACCESS}
OPAQUE_PREFIXES = tuple(kind.prefix for kind in OPAQUE_KINDS.values())
NOT_FOUND = "organization not found"


@dataclass(frozen=True)
class RemoteSettings:
    """How a remote guard reaches and trusts its scopegate server."""

    #: The server's base URL: the ``iss`` of its agent tokens (a trailing ``/`` is cut).
    server_url: str
    #: This service's audience, as registered: the ``aud`` its tokens carry.
    audience: str
    client_id: str
    client_secret: str = field(repr=False)
    realm: str = "scopegate"
    #: How long an introspection answer is reused (active: never past the token's exp).
    introspection_cache_seconds: float = 10.0
    inactive_cache_seconds: float = 2.0
    #: The longest any one request to the server may take, start to end.
    timeout_seconds: float = 3.0
    #: How stale the deny list may grow before agent tokens get 503 (default: the
    #: server's ``bound_seconds``, its in-process bound).
    deny_bound_seconds: float | None = None
    #: TLS: ``True`` (the system's and certifi's CAs), a CA bundle path, an
    #: ``ssl.SSLContext``, or ``False`` (never outside tests).
    verify: bool | str | ssl.SSLContext = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "server_url", self.server_url.rstrip("/"))
        parts = urlsplit(self.server_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("server_url: an absolute http(s) URL")
        if not self.audience or not self.client_id or not self.client_secret:
            raise ValueError("audience, client_id and client_secret are required")
        for name in ("introspection_cache_seconds", "inactive_cache_seconds"):
            if not 0 <= getattr(self, name) <= 300:
                raise ValueError(f"{name}: between 0 and 300")
        if not 0 < self.timeout_seconds <= 60:
            raise ValueError("timeout_seconds: above 0, at most 60")
        if self.deny_bound_seconds is not None and not 0 < self.deny_bound_seconds <= 60:
            raise ValueError("deny_bound_seconds: above 0, at most 60")


class RemoteVerifier:
    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.realm = settings.realm
        server, authorization = settings.server_url, basic_authorization(
            settings.client_id, settings.client_secret)
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self.keys = JwksCache(f"{server}/.well-known/jwks.json", self.http,
                              settings.timeout_seconds)
        self.introspector = Introspector(
            f"{server}/oauth/introspect", server, authorization, self.http,
            timeout=settings.timeout_seconds,
            active_seconds=settings.introspection_cache_seconds,
            inactive_seconds=settings.inactive_cache_seconds)
        self.deny = DenyFeed(f"{server}/oauth/agent-deny-list", authorization, self.http,
                             timeout=settings.timeout_seconds,
                             bound=settings.deny_bound_seconds)
        self.agents = AgentTokens(self.keys, self.deny, issuer=server,
                                  audience=settings.audience, realm=self.realm)

    # -- the one HTTP client ------------------------------------------------------
    def http(self) -> httpx.AsyncClient:
        """The shared client: the one ``running`` made, or one made on first use on
        this event loop (an app run without the guard's lifespan)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            verify = self.settings.verify
            if isinstance(verify, str):  # a CA bundle (httpx wants a context for one)
                verify = ssl.create_default_context(cafile=verify)
            self._client = httpx.AsyncClient(
                verify=verify, follow_redirects=False,
                timeout=self.settings.timeout_seconds,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
            self._client_loop = loop
        return self._client

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Fetch the keys and the deny list once (so the first request finds them; a
        server down at start is logged, not fatal), then poll the deny feed until the
        app stops."""
        client = self.http()
        await asyncio.gather(self.keys.refresh(), self.deny.attempt())
        feed = asyncio.get_running_loop().create_task(self.deny.run())
        try:
            yield
        finally:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
            await self.keys.close()
            await client.aclose()
            self._client = self._client_loop = None

    def after_refusal(self, request: Request) -> BackgroundTask | None:
        return None  # refusals here leave no audit event (the server never sees them)

    # -- deciding -----------------------------------------------------------------
    def _bearer(self, call: GuardCall) -> str:
        token = call.presented.bearer
        if token is None:  # a browser session: only the server can read those
            raise self._invalid("Authentication credentials were not provided.")
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise self._invalid("The access token is malformed.")
        return token

    def _invalid(self, description: str) -> ChallengeError:
        return ChallengeError(invalid_token(description, self.realm))

    async def _introspected(self, token: str) -> tuple[Introspected, TokenKind]:
        if not token.startswith(OPAQUE_PREFIXES):
            raise self._invalid("The access token is invalid.")
        answer = await self.introspector.introspect(token)
        if not answer.active or answer.credential_kind is None:
            raise self._invalid("The access token is invalid.")
        if answer.exp is not None and answer.exp <= time.time():
            raise self._invalid("The access token expired.")
        audiences = answer.audiences()
        if audiences and self.settings.audience not in audiences:
            raise self._invalid("The access token was not issued for this resource.")
        return answer, OPAQUE_KINDS[answer.credential_kind]

    def _opaque_principal(self, answer: Introspected, kind: TokenKind,
                          org_id: int | None, scopes: frozenset[str]) -> Principal:
        sub = answer.sub
        person = sub if kind.acts_for_person and sub and sub.isascii() and sub.isdigit() else None
        audiences = answer.audiences()
        return Principal(kind=kind, credential_ref=answer.credential_ref or "",
                         user_id=int(person) if person else None,
                         org_id=None if kind.acts_for_person else org_id, scopes=scopes,
                         expires_at=answer.exp, audience=audiences[0] if audiences else None)

    async def org_access(self, call: GuardCall, scope_map: ScopeMap, org: str) -> OrgAccess:
        token = self._bearer(call)
        if token.startswith(TokenKind.AGENT.prefix):
            claims = await self.agents.verify(token)
            _check_kind(scope_map, TokenKind.AGENT)
            if claims.org_slug != org:
                raise NotFound(NOT_FOUND)
            principal = self.agents.principal(claims)
            oa = OrgAccess(OrgRef(claims.org_id, org),
                           Access(principal, claims.org_id, registry.expand(claims.scopes)))
        else:
            answer, kind = await self._introspected(token)
            _check_kind(scope_map, kind)
            found = answer.org(org)
            if found is None:
                raise NotFound(NOT_FOUND)
            scopes = found.known_scopes()
            principal = self._opaque_principal(answer, kind, found.id, scopes)
            oa = OrgAccess(OrgRef(found.id, found.slug), Access(principal, found.id, scopes))
        decision = scope_map.decide(call.method, oa.scopes)
        if not decision.allowed:
            raise ChallengeError(self._insufficient(oa, decision.sufficient))
        return oa

    async def principal(self, call: GuardCall, scope_map: ScopeMap) -> Principal:
        token = self._bearer(call)
        if token.startswith(TokenKind.AGENT.prefix):
            principal = self.agents.principal(await self.agents.verify(token))
        else:
            answer, kind = await self._introspected(token)
            own = answer.orgs[0].id if len(answer.orgs) == 1 else None
            held = frozenset((answer.scope or "").split()) & registry.ALL_SCOPES
            principal = self._opaque_principal(answer, kind, own, held)
        _check_kind(scope_map, principal.kind)
        if not scope_map.decide(call.method, frozenset()).allowed:
            raise Forbidden("This endpoint does not accept this method.")
        return principal

    def _insufficient(self, oa: OrgAccess, sufficient: tuple[str, ...]) -> Challenge:
        """The ``insufficient_scope`` challenge; for an agent token, enriched as
        ``AgentApprovalHint`` does in-process. The role is not known here: the first
        sufficient scope is offered, and the approval page caps it by the role."""
        challenge = insufficient_scope(sufficient, self.realm)
        principal = oa.principal
        if principal.kind is not TokenKind.AGENT or principal.session_id is None:
            return challenge
        body = dict(challenge.body)
        if not sufficient:
            body["approval"] = None
            body["detail"] = "The agent token lacks a scope this request needs, and no " \
                             "scope would suffice."
        else:
            scope = sufficient[0]
            body["approval"] = {
                "url": approval_url(self.settings.server_url, oa.org.slug,
                                    principal.session_id, [scope], principal.agent),
                "scopes": [scope],
                "sessionId": principal.session_id,
            }
            body["detail"] = ("The agent token lacks a scope this request needs. Ask its "
                              "person to approve it at approval.url, then mint a new token.")
        return Challenge(challenge.status, challenge.headers, body)


def _check_kind(scope_map: ScopeMap, kind: TokenKind | None) -> None:
    if not scope_map.admits_kind(kind):
        raise Forbidden("This kind of credential cannot use this endpoint.")
