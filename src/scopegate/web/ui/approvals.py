"""The person's side of agent writes: the approval page, my agent sessions, the audit log.

Approval is a CSRF-protected form POST from a first-party browser session. The grant
is recorded for the logged-in approver and capped at their scopes, so a link crafted
by someone else can only let a person approve for their own agent session.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from scopegate.core import scopes as registry
from scopegate.core.agent_token import AGENT_MAX
from scopegate.core.permissions import actions_for_scope
from scopegate.core.rate_limits import RateLimitedAction
from scopegate.core.roles import role_scopes
from scopegate.guard.routes import declared_scope_maps
from scopegate.services import audit, grants
from scopegate.services.errors import ServiceError
from scopegate.services.rate_limiter import RateRefused
from scopegate.store.models import AGENT_SESSION_MAX, SLUG_MAX
from scopegate.web.api.audit import AUDIT_LOG
from scopegate.web.auth import request_info
from scopegate.web.rate_limits import limit_async, page_refusal
from scopegate.web.runtime import runtime
from scopegate.web.transactions import TransactionalRoute, get_db, unit_of_work
from scopegate.web.ui.rendering import problem_page, render
from scopegate.web.ui.session import (
    WebUser,
    check_form_csrf,
    org_access,
    page_access,
    web_user,
)

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)



def scope_rows(request: Request, requested: frozenset[str], held: frozenset[str]) -> list[dict]:
    """Each requested scope: its description, what it unlocks here, whether it is held."""
    maps = declared_scope_maps(request.app.routes)
    return [
        {
            "scope": scope,
            "description": registry.DESCRIPTIONS[scope],
            "actions": actions_for_scope(scope, maps),
            "held": scope in held,
        }
        for scope in registry.ordered(requested)
    ]


@router.get("/organizations/{org}/agent/approve", response_class=HTMLResponse)
async def approval_page(
    request: Request,
    org: str,
    session: str = Query(default="", max_length=AGENT_SESSION_MAX),
    scopes: str = Query(default="", max_length=1024),
    agent: str = Query(default="", max_length=AGENT_MAX),
    me: WebUser = Depends(web_user),
) -> HTMLResponse:
    """What the agent asks for, what each scope lets it do, for how long; Approve/Deny."""
    if len(org) > SLUG_MAX:
        return problem_page(request, me, 404, "Not found", "No such organization.")
    try:
        grants.check_session_and_agent(session, agent)
    except ServiceError as error:  # the rule broken, never the link's text
        return problem_page(request, me, 400, "Invalid approval link", error.detail)
    try:
        requested = registry.parse(scopes)
    except registry.UnknownScopeError:
        return problem_page(request, me, 400, "Invalid approval link",
                        "The link names a scope that does not exist.")
    if not requested:
        return problem_page(request, me, 400, "Invalid approval link", "The link names no scopes.")
    try:
        oa = await org_access(request, me, org)
    except ServiceError:
        return problem_page(request, me, 404, "Not found", "No such organization.")
    held = role_scopes(oa.access.role) if oa.access.role else frozenset()
    choices = [
        (key, seconds, seconds <= oa.org.max_grant_seconds)
        for key, seconds in grants.LIFETIME_CHOICES.items()
    ]
    return render(
        request, "approve.html", me=me, org=oa.org, session_id=session, agent=agent,
        rows=scope_rows(request, requested, held), choices=choices,
        default_lifetime=grants.DEFAULT_LIFETIME,
        grantable=any(scope in held for scope in requested),
    )


@router.post("/organizations/{org}/agent/approve", response_class=HTMLResponse)
async def approval_decision(
    request: Request,
    org: str,
    session: Annotated[str, Form(max_length=AGENT_SESSION_MAX)],
    decision: Annotated[str, Form(max_length=16)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    scopes: Annotated[list[str] | None, Form(max_length=64)] = None,
    agent: Annotated[str, Form(max_length=AGENT_MAX)] = "",
    lifetime: Annotated[str, Form(max_length=8)] = grants.DEFAULT_LIFETIME,
    me: WebUser = Depends(web_user),
) -> Response:
    check_form_csrf(request, me, csrf_token)
    if request.headers.get("authorization"):
        return problem_page(request, me, 403, "Not allowed", "Approvals are made by a person in "
                        "the browser, never with a token.")
    try:
        await limit_async(request, RateLimitedAction.APPROVAL, account=f"user:{me.user.id}")
    except RateRefused as refused:
        return page_refusal(request, refused, me)
    info = request_info(request)
    try:
        # One validation for both decisions: a denial records what an approval would.
        grants.check_session_and_agent(session, agent)
        requested = registry.validate(scopes or [])
        oa = await org_access(request, me, org[:SLUG_MAX + 1])
        if decision == "deny":
            await unit_of_work(runtime(request), lambda db: grants.record_denial(
                db, org=oa.org, user_id=me.user.id, session_id=session, scopes=requested,
                agent=agent, request=info), writes=True)
            return render(request, "approve_done.html", me=me, org=oa.org, approved=False,
                          session_id=session, agent=agent)
        if decision != "approve":
            return problem_page(request, me, 400, "Invalid decision", "Choose Approve or Deny.")
        approval = await unit_of_work(runtime(request), lambda db: grants.approve(
            db, org=oa.org, approver_id=me.user.id, session_id=session, requested=requested,
            lifetime=grants.lifetime_seconds(lifetime, oa.org), agent=agent, request=info,
        ), writes=True)
    except registry.UnknownScopeError:
        return problem_page(request, me, 400, "Invalid request",
                        "The form names a scope that does not exist.")
    except ServiceError as error:
        return problem_page(request, me, error.status, "Could not approve", error.detail)
    return render(
        request, "approve_done.html", 201, me=me, org=oa.org, approved=True,
        session_id=session, agent=agent, scopes=registry.ordered(approval.scopes),
        dropped=registry.ordered(approval.dropped), expires_in=approval.expires_in,
    )


@router.get("/agent/sessions", response_class=HTMLResponse)
def my_agent_sessions(
    request: Request, me: WebUser = Depends(web_user), db: Session = Depends(get_db)
) -> HTMLResponse:
    return render(request, "sessions.html", me=me,
                   sessions=grants.list_sessions(db, me.user.id))


@router.post("/agent/sessions/revoke")
async def revoke_agent_session(
    request: Request,
    org: Annotated[str, Form(max_length=SLUG_MAX)],
    session: Annotated[str, Form(max_length=AGENT_SESSION_MAX)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    me: WebUser = Depends(web_user),
) -> Response:
    check_form_csrf(request, me, csrf_token)
    rt = runtime(request)
    info = request_info(request)
    try:
        oa = await org_access(request, me, org)
        await unit_of_work(rt, lambda db: grants.revoke_session(
            db, rt.deny_list, org=oa.org, user_id=me.user.id, session_id=session,
            request=info), writes=True)
    except ServiceError as error:
        return problem_page(request, me, error.status, "Could not revoke", error.detail)
    return RedirectResponse("/agent/sessions", status_code=303)


@router.get("/organizations/{org}/audit-log", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    org: str,
    event: str = Query(default="", max_length=32),
    page: int = Query(default=1, ge=1, le=100_000),
    me: WebUser = Depends(web_user),
) -> HTMLResponse:
    oa = await page_access(request, me, org, AUDIT_LOG,
                           "Reading the audit log needs org:write (manager or owner).")
    if isinstance(oa, HTMLResponse):
        return oa
    flt = audit.AuditFilter(event=event if event in audit.Event.ALL else None)
    rows = await unit_of_work(runtime(request), lambda db: audit.list_events(
        db, oa.org.id, flt, limit=100, offset=(page - 1) * 100), writes=False)
    return render(request, "audit.html", me=me, org=oa.org, rows=rows, event=flt.event,
                   events=audit.Event.ALL, page=page)
