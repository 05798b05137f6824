"""Direct mode: the MCP client's token is scopegate's own; tools act through agent tokens.

Each organization call carries an agent capability token minted for the MCP client's
grant (``act`` = the client id, the session = the grant, so an approval lasts across
refreshes): read scopes by default, write scopes only while the person's approval for
that session lives, and never more than the MCP token holds. Minted tokens are kept per
(credential, organization) until shortly before they expire.
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session

from scopegate.core.access import Principal
from scopegate.runtime.process import Runtime
from scopegate.services import agent_tokens, audit, directory
from scopegate.services.access import OrgAccess
from scopegate.services.caches import MISSING, BoundedCache
from scopegate.services.errors import Forbidden, NotFound
from scopegate.services.gate import InsufficientScope, Verdict
from scopegate.services.mcp.api import ToolFailure
from scopegate.web.api.agent import AGENT_TOKEN, minted_and_recorded
from scopegate.web.transactions import unit_of_work

#: A cached agent token is renewed when it has less than this left.
RENEW_BEFORE_SECONDS = 30
MINTED_CACHE_ENTRIES = 10_000


class MintedTokens:
    """Agent tokens minted for MCP calls, per (credential, organization), bounded."""

    def __init__(self) -> None:
        self._cache: BoundedCache[tuple[str, str], tuple[str, int]] = BoundedCache(
            MINTED_CACHE_ENTRIES, "mcp_minted_tokens")

    def get(self, key: tuple[str, str]) -> str | None:
        found = self._cache.get(key)
        if found is MISSING:
            return None
        token, expires_at = found  # type: ignore[misc]
        return token if expires_at - time.time() > RENEW_BEFORE_SECONDS else None

    def put(self, key: tuple[str, str], token: str, expires_at: int) -> None:
        self._cache.put(key, (token, expires_at), self._cache.generation)


class DirectBackend:
    """The ``Backend`` (``services/mcp/tools.py``) of one direct-mode MCP request."""

    def __init__(self, rt: Runtime, principal: Principal, minted: MintedTokens,
                 request: audit.RequestInfo) -> None:
        self._rt = rt
        self._principal = principal
        self._minted = minted
        self._request = request

    async def bearer(self, api: str, org: str, *, renew: bool = False) -> str:
        key = (self._principal.credential_ref, org)
        token = None if renew else self._minted.get(key)
        if token is None:
            oa = await self._org_access(org)
            minted = await minted_and_recorded(self._rt, lambda db: self._mint(db, oa))
            token = minted.token
            self._minted.put(key, token, minted.claims.expires_at)
        return token

    async def _org_access(self, org: str) -> OrgAccess:
        gate = self._rt.gate
        verdict = Verdict()
        try:
            return await gate.run(lambda conn: gate.decide(
                AGENT_TOKEN, "POST", self._principal, org, conn, verdict, self._request))
        except NotFound:
            raise ToolFailure("Not found (or not visible to you).") from None
        except (Forbidden, InsufficientScope):
            raise ToolFailure("This organization does not allow agent access.") from None
        finally:
            if verdict.denials:
                await anyio.to_thread.run_sync(audit.write_events, self._rt.factory,
                                               verdict.denials)

    def _mint(self, db: Session, oa: OrgAccess) -> agent_tokens.MintedAgentToken:
        session_id = self._principal.session_id  # an OAuth access token's grant
        if session_id is None:
            raise ToolFailure("This credential cannot act through agent tokens.")
        try:
            return agent_tokens.mint(
                db, settings=self._rt.settings, keys=self._rt.keys, org=oa.org,
                access=oa.access, session_id=session_id, requested=None,
                ttl_seconds=None, agent=self._principal.agent, request=self._request)
        except Forbidden:
            raise ToolFailure("This organization does not allow agent access.") from None

    async def whoami(self, api: str) -> dict[str, Any]:
        def read(db: Session) -> dict[str, Any]:
            user = directory.get_user(db, self._principal.user_id)
            return {"id": str(user.id), "email": user.email, "name": user.name,
                    "client": self._principal.agent}
        return await unit_of_work(self._rt, read, writes=False)

    async def organizations(self, api: str) -> list[dict[str, Any]]:
        """The organizations the person consented to for this client and still belongs
        to (the MCP token's own list; no agent token covers more than one)."""
        allowed = self._principal.orgs

        def read(db: Session) -> list[dict[str, Any]]:
            return [
                {"slug": m.organization.slug, "name": m.organization.name,
                 "role": m.role}
                for m in directory.memberships(db, self._principal.user_id)
                if allowed is None or m.org_id in allowed
            ]
        return await unit_of_work(self._rt, read, writes=False)
