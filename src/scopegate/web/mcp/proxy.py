"""Proxy mode: tool calls through the upstream token, and upstream refresh.

A tool call opens the grant's upstream tokens with the front-door access token it came
with (``upstream_vault``: the database alone cannot). When the upstream is a scopegate,
calls go through an agent token minted upstream for this grant's session (read-only
until the person approves writes there); otherwise with the upstream token itself.

When an MCP client refreshes its front-door tokens, the upstream tokens are refreshed
first, one refresh per grant at a time across every process (a claim on the grant row,
released after); a terminal upstream ``invalid_grant`` revokes the grant, so the
client's refresh fails and its access token answers 401 ``invalid_token``.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from scopegate.core.access import Principal
from scopegate.runtime.process import Runtime
from scopegate.services.deny_list import DenyList
from scopegate.services.mcp.api import ApiClient, ToolFailure
from scopegate.services.mcp.upstream import Upstream, UpstreamRefused
from scopegate.services.oauth import tokens, upstream_vault
from scopegate.services.oauth.upstream_vault import UpstreamTokens
from scopegate.store.oauth_models import OAuthGrant
from scopegate.store.types import utcnow
from scopegate.web.mcp.direct import MintedTokens
from scopegate.web.transactions import unit_of_work

log = logging.getLogger("scopegate.mcp")
#: How long one process may hold a grant's upstream refresh before another may take it.
REFRESH_CLAIM_SECONDS = 30
#: How long an agent token minted upstream is reused (it lives longer upstream).
MINTED_SECONDS = 60


def _opened(db: Session, secret: str, kind: str) -> tuple[int, bytes, UpstreamTokens] | None:
    """(grant id, grant key, upstream tokens) for a live front-door token, else ``None``."""
    found = tokens.find_token(db, secret, kind)
    if (found is None or found.revoked or found.used or found.is_expired()
            or found.wrapped_key is None):
        return None
    grant = db.get(OAuthGrant, found.grant_id)
    if grant is None or grant.upstream is None:
        return None
    try:
        key = upstream_vault.unwrap(found.wrapped_key, secret)
        return grant.id, key, upstream_vault.open_sealed(key, grant.upstream)
    except upstream_vault.VaultError:
        return None


class ProxyGrants:
    def __init__(self, rt: Runtime, upstream: Upstream) -> None:
        self._rt = rt
        self._upstream = upstream
        self._deny_list = rt.deny_list

    @property
    def issuer(self) -> str:
        return self._upstream.issuer

    async def upstream_tokens(self, access_token: str) -> tuple[int, UpstreamTokens]:
        opened = await unit_of_work(self._rt, lambda db: _opened(db, access_token,
                                                                 tokens.ACCESS), writes=False)
        if opened is None:
            raise ToolFailure("This sign-in has ended. Sign in again.")
        grant_id, _, upstream = opened
        if upstream.expires_at <= time.time():
            raise ToolFailure("The upstream sign-in expired; refresh and try again.")
        return grant_id, upstream

    async def refresh_upstream(self, refresh_token: str) -> None:
        """Before a front-door refresh: refresh the grant's upstream tokens (single-flight)."""
        opened = await unit_of_work(self._rt, lambda db: _opened(db, refresh_token,
                                                                 tokens.REFRESH), writes=False)
        if opened is None:
            return  # not a live proxy-mode refresh token: the token endpoint says so
        grant_id, key, upstream = opened
        if upstream.refresh_token is None or not await unit_of_work(
                self._rt, lambda db: _claim(db, grant_id), writes=True):
            return
        try:
            fresh = await self._upstream.refresh(upstream.refresh_token)
        except UpstreamRefused as refused:
            terminal = refused.terminal
            await unit_of_work(self._rt, lambda db: _release(db, grant_id, terminal,
                                                             self._deny_list), writes=True)
            return
        if fresh.refresh_token is None:
            fresh = UpstreamTokens(fresh.access_token, upstream.refresh_token,
                                   fresh.expires_at, fresh.scope)
        sealed = upstream_vault.seal(key, fresh)
        await unit_of_work(self._rt, lambda db: db.execute(
            update(OAuthGrant).where(OAuthGrant.id == grant_id)
            .values(upstream=sealed, upstream_refreshing_until=None)), writes=True)


def _claim(db: Session, grant_id: int) -> bool:
    now = utcnow()
    return bool(db.execute(
        update(OAuthGrant)
        .where(OAuthGrant.id == grant_id, OAuthGrant.revoked_at.is_(None),
               or_(OAuthGrant.upstream_refreshing_until.is_(None),
                   OAuthGrant.upstream_refreshing_until < now))
        .values(upstream_refreshing_until=now + timedelta(seconds=REFRESH_CLAIM_SECONDS))
    ).rowcount)


def _release(db: Session, grant_id: int, terminal: bool, deny_list: DenyList) -> None:
    if terminal:
        log.info("upstream refused a refresh for good: grant %d revoked", grant_id)
        tokens.revoke_grant(db, deny_list, grant_id)
    db.execute(update(OAuthGrant).where(OAuthGrant.id == grant_id)
               .values(upstream_refreshing_until=None))


class ProxyBackend:
    """The ``Backend`` (``services/mcp/tools.py``) of one proxy-mode MCP request."""

    def __init__(self, grants: ProxyGrants, api: ApiClient, principal: Principal,
                 access_token: str, minted: MintedTokens) -> None:
        self._grants = grants
        self._api = api
        self._principal = principal
        self._access_token = access_token
        self._minted = minted

    async def _upstream(self) -> tuple[int, UpstreamTokens]:
        return await self._grants.upstream_tokens(self._access_token)

    async def bearer(self, api: str, org: str, *, renew: bool = False) -> str:
        """An agent token minted upstream for this grant's session when the upstream
        mints them (a scopegate: read-only until the person approves writes there);
        else, where it has no such route, the upstream access token itself."""
        key = (self._principal.credential_ref, org)
        cached = None if renew else self._minted.get(key)
        if cached is not None:
            return cached
        grant_id, upstream = await self._upstream()
        try:
            minted = await self._api.call(
                api, upstream.access_token, "POST",
                f"organizations/{quote(org, safe='')}/agent/token/",
                body={"sessionId": f"mcp-front-door-{grant_id}"})
        except ToolFailure as failure:
            if failure.status in (404, 405):
                return upstream.access_token
            raise
        if not isinstance(minted, dict) or not isinstance(minted.get("token"), str):
            raise ToolFailure("The API answered in an unexpected shape.")
        self._minted.put(key, minted["token"], int(time.time()) + MINTED_SECONDS)
        return minted["token"]

    async def whoami(self, api: str) -> dict[str, Any]:
        """The upstream's ``users/me/`` when it has one (a scopegate does)."""
        _, upstream = await self._upstream()
        me: Any = None
        try:
            me = await self._api.call(api, upstream.access_token, "GET", "users/me/")
        except ToolFailure as failure:
            if failure.status not in (404, 405):
                raise
        found = me if isinstance(me, dict) else {}
        return {"email": found.get("email"),
                "name": found.get("name")
                or f"the person signed in at {self._grants.issuer}",
                "client": self._principal.agent, "scopes": upstream.scope.split()}

    async def organizations(self, api: str) -> list[dict[str, Any]]:
        _, upstream = await self._upstream()
        orgs = await self._api.call(api, upstream.access_token, "GET", "organizations/")
        if not isinstance(orgs, list):
            raise ToolFailure("The API answered in an unexpected shape.")
        return [{"slug": o.get("slug"), "name": o.get("name"), "role": o.get("role")}
                for o in orgs if isinstance(o, dict)]
