"""The scope usage page: ``/organizations/{org}/scope-usage``.

Every credential of the organization with what it holds, what it used and the least
powerful set that would have served it (the report of ``services/scope_usage_report.py``).
Integrations and org tokens with a smaller recommended set get "narrow to recommended":
a confirmation page (GET, changes nothing), then a CSRF-protected POST that narrows,
writes ``scopes.narrow`` to the audit log and returns to the list. Viewing and narrowing
need ``org:write``, like reading the audit log: managers and owners, who may also manage
integrations and org tokens and grant token-only scopes such as ``org:ci``.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from scopegate.core import scopes as registry
from scopegate.services import scope_usage_report
from scopegate.services.access import OrgAccess
from scopegate.services.errors import ServiceError
from scopegate.services.scope_usage_report import CredentialUsage
from scopegate.store.integration_models import SUBJECT_MAX
from scopegate.web.api import declarations
from scopegate.web.api.scope_usage import DEFAULT_DAYS, SCOPE_USAGE
from scopegate.web.runtime import runtime
from scopegate.web.transactions import TransactionalRoute, unit_of_work
from scopegate.web.ui.rendering import problem_page, render
from scopegate.web.ui.session import WebUser, check_form_csrf, page_access, web_user

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)
Days = Annotated[int, Query(ge=1, le=scope_usage_report.MAX_DAYS)]



async def _access(request: Request, me: WebUser, org: str) -> OrgAccess | HTMLResponse:
    """My access in ``org`` if it lets me see scope usage, else the page saying no."""
    return await page_access(request, me, org, SCOPE_USAGE,
                             "Scope usage needs org:write (manager or owner).")


async def _report(request: Request, oa: OrgAccess, days: int) -> list[CredentialUsage]:
    return await unit_of_work(runtime(request), lambda db: scope_usage_report.report(
        db, declarations.scope_power(), days=days, org_id=oa.org.id), writes=False)


def _list_url(org: str, days: int, **extra: str) -> str:
    return f"/organizations/{org}/scope-usage?" + urlencode({"days": days, **extra})


@router.get("/organizations/{org}/scope-usage", response_class=HTMLResponse)
async def scope_usage_page(
    request: Request,
    org: str,
    days: Days = DEFAULT_DAYS,
    narrowed: str = Query(default="", max_length=SUBJECT_MAX),
    me: WebUser = Depends(web_user),
) -> HTMLResponse:
    oa = await _access(request, me, org)
    if isinstance(oa, HTMLResponse):
        return oa
    rows = await _report(request, oa, days)
    done = next((row for row in rows if narrowed and row.subject == narrowed), None)
    return render(request, "scope_usage.html", me=me, org=oa.org, rows=rows, days=days,
                  narrowed=done, ordered=registry.ordered)


@router.get("/organizations/{org}/scope-usage/narrow", response_class=HTMLResponse)
async def narrow_confirmation(
    request: Request,
    org: str,
    subject: str = Query(max_length=SUBJECT_MAX),
    days: Days = DEFAULT_DAYS,
    me: WebUser = Depends(web_user),
) -> HTMLResponse:
    """What narrowing would change, and the button that does it (nothing changes here)."""
    oa = await _access(request, me, org)
    if isinstance(oa, HTMLResponse):
        return oa
    row = next((r for r in await _report(request, oa, days) if r.subject == subject), None)
    if row is None or not row.narrowable:
        return problem_page(request, me, 404, "Nothing to narrow",
                        "This credential has no smaller recommended set to narrow to.")
    fields = [("subject", row.subject), ("days", str(days)),
              *(("scopes", scope) for scope in registry.ordered(row.recommended))]
    return render(request, "scope_usage_narrow.html", me=me, org=oa.org, row=row, days=days,
                  fields=fields, ordered=registry.ordered, back=_list_url(oa.org.slug, days))


@router.post("/organizations/{org}/scope-usage/narrow")
async def narrow(
    request: Request,
    org: str,
    subject: Annotated[str, Form(max_length=SUBJECT_MAX)],
    scopes: Annotated[list[str], Form(max_length=64)],
    days: Annotated[int, Form(ge=1, le=scope_usage_report.MAX_DAYS)] = DEFAULT_DAYS,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    me: WebUser = Depends(web_user),
) -> Response:
    """Narrow to the scopes the confirmation page showed (never wider than now)."""
    check_form_csrf(request, me, csrf_token)
    oa = await _access(request, me, org)
    if isinstance(oa, HTMLResponse):
        return oa
    try:
        await unit_of_work(runtime(request), lambda db: scope_usage_report.narrow_to_recommended(
            db, declarations.scope_power(), oa.org.id, subject, scopes, editor=oa.access),
            writes=True)
    except ServiceError as error:
        return problem_page(request, me, error.status, "Could not narrow", error.detail)
    return RedirectResponse(_list_url(oa.org.slug, days, narrowed=subject), status_code=303)
