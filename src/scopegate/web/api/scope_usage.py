"""Scope usage: ``/api/0/organizations/{org}/scope-usage/``.

Per credential of the organization: what it holds, which of its scopes admitted a call
in the last ``days`` days (default 30), which it never used, and the least powerful
set that would have admitted every call. Read with ``org:write``, like the audit log,
and only by a person (a token acting alone cannot survey its peers).
"""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from scopegate.guard import OrgAccess, Permission, Rule, ScopeMap, TokenKind
from scopegate.guard import scopes as registry
from scopegate.guard import scopes as s
from scopegate.services import scope_usage_report
from scopegate.services.scope_usage_report import CredentialUsage, EndpointUse
from scopegate.web.api import declarations
from scopegate.web.api.models import ApiModel
from scopegate.web.transactions import TransactionalRoute, get_db

router = APIRouter(route_class=TransactionalRoute, tags=["scope usage"])

_PEOPLE = frozenset({None, TokenKind.USER, TokenKind.OAUTH_ACCESS})
SCOPE_USAGE = ScopeMap({"GET": Rule((s.ORG_WRITE, s.ORG_ADMIN), "read scope usage")},
                       kinds=_PEOPLE)
DEFAULT_DAYS = 30


class EndpointUseOut(ApiModel):
    method: str
    endpoint: str
    #: The credential's scope that admitted these calls ("" when none was needed).
    admitted_by: str
    calls: int
    last_day: date

    @classmethod
    def of(cls, use: EndpointUse) -> EndpointUseOut:
        return cls(method=use.method, endpoint=use.endpoint, admitted_by=use.admitted_by,
                   calls=use.calls, last_day=use.last_day)


class CredentialUsageOut(ApiModel):
    organization: str
    #: ``integration:<id>``, ``org_token:<id>``, ``user_token:<id>:<hash prefix>``,
    #: ``oauth:oauth-grant-<id>``, ``agent_session:<user id>:<session>``.
    subject: str
    kind: str
    name: str
    granted: list[str]
    used: list[str]
    unused: list[str]
    calls: int
    last_day: date | None
    recommended: list[str]
    #: Whether ``recommended`` is smaller than ``granted``.
    narrower: bool
    advice: str
    #: Whether the scope-usage page offers "narrow to recommended".
    narrowable: bool
    endpoints: list[EndpointUseOut]

    @classmethod
    def of(cls, usage: CredentialUsage) -> CredentialUsageOut:
        return cls(
            organization=usage.org_slug, subject=usage.subject, kind=usage.kind,
            name=usage.name, granted=registry.ordered(usage.granted),
            used=registry.ordered(usage.used), unused=registry.ordered(usage.unused),
            calls=usage.calls, last_day=usage.last_day,
            recommended=registry.ordered(usage.recommended), narrower=usage.narrower,
            advice=usage.advice, narrowable=usage.narrowable,
            endpoints=[EndpointUseOut.of(use) for use in usage.endpoints])


class ScopeUsageOut(ApiModel):
    days: int
    #: The window, UTC days, both included.
    since: date
    until: date
    credentials: list[CredentialUsageOut]


@router.get("/organizations/{org}/scope-usage/", response_model=ScopeUsageOut)
def scope_usage(
    days: int = Query(default=DEFAULT_DAYS, ge=1, le=scope_usage_report.MAX_DAYS),
    oa: OrgAccess = Depends(Permission(SCOPE_USAGE)),
    db: Session = Depends(get_db),
) -> ScopeUsageOut:
    """Every credential of the organization with its scope usage and a recommendation
    (counts are written every few seconds: the latest calls may not be in yet)."""
    since, until = scope_usage_report.window(days)
    rows = scope_usage_report.report(db, declarations.scope_power(), days=days,
                                     org_id=oa.org.id, today=until)
    return ScopeUsageOut(days=days, since=since, until=until,
                         credentials=[CredentialUsageOut.of(row) for row in rows])
