"""The agent approval hint: an ``insufficient_scope`` challenge to an agent token says
where its person can approve the missing scope.

Computed, not stored: the only trace is the ``agent.challenge`` audit event, which the
gate hands back for writing after the request.
"""

from __future__ import annotations

from urllib.parse import urlencode

from scopegate.core.challenges import Challenge
from scopegate.core.permissions import least_sufficient
from scopegate.core.roles import role_scopes
from scopegate.core.token_kinds import TokenKind
from scopegate.services import audit
from scopegate.services.access import OrgAccess
from scopegate.store.models import AuditEvent


def approval_url(base_url: str, org_slug: str, session_id: str, scopes: list[str],
                 agent: str | None) -> str:
    query = {"session": session_id, "scopes": " ".join(scopes)}
    if agent:
        query["agent"] = agent
    return f"{base_url}/organizations/{org_slug}/agent/approve?{urlencode(query)}"


class AgentApprovalHint:
    """An ``InsufficientScopeHint`` (``services/gate.py``) for agent tokens."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url

    def __call__(self, oa: OrgAccess, sufficient: tuple[str, ...], challenge: Challenge,
                 request: audit.RequestInfo, denials: list[AuditEvent]) -> Challenge:
        principal = oa.access.principal
        if principal.kind is not TokenKind.AGENT or principal.session_id is None:
            return challenge
        role = oa.access.role
        scope = least_sufficient(sufficient, role_scopes(role)) if role is not None else None
        body = dict(challenge.body)
        if scope is None:
            body["approval"] = None
            body["detail"] = (
                "The agent token lacks a scope this request needs, and its person's role "
                "does not hold one either."
            )
        else:
            body["approval"] = {
                "url": approval_url(self._base_url, oa.org.slug, principal.session_id,
                                    [scope], principal.agent),
                "scopes": [scope],
                "sessionId": principal.session_id,
            }
            body["detail"] = (
                "The agent token lacks a scope this request needs. Ask its person to "
                "approve it at approval.url, then mint a new token."
            )
        denials.append(audit.event(
            audit.Event.CHALLENGE, org_id=oa.org.id, user_id=principal.user_id,
            session_id=principal.session_id, agent=principal.agent, scopes=sufficient,
            request=request, detail=request.action[:512],
        ))
        return Challenge(challenge.status, challenge.headers, body)
