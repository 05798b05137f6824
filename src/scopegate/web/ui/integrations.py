"""The integrations pages: the list (``/organizations/{org}/integrations``) and the
permission editor (``/organizations/{org}/integrations/{slug}``).

Access is the gate's: the person's ``OrgAccess`` in the organization, checked against
the same ``ScopeMap``s the API declares (``web/api/integrations.py``), so a page never
allows what the API refuses. The editor's rows come from the scope registry
(``core/permission_editor.py``): every scope an integration can hold has a control, and
saving an integration unchanged never fails. Secrets appear once, on the page that
answers the form that made them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from scopegate.core import permission_editor
from scopegate.core import scopes as registry
from scopegate.core.permissions import ScopeMap
from scopegate.core.rate_limits import RateLimitedAction
from scopegate.services import deploy_hook, integrations
from scopegate.services.access import OrgAccess
from scopegate.services.errors import Forbidden, Invalid, ServiceError
from scopegate.services.rate_limiter import RateRefused
from scopegate.store.integration_models import DEPLOY_HOOK
from scopegate.store.models import NAME_MAX, SLUG_MAX
from scopegate.web.api.integrations import INTEGRATION, INTEGRATION_TOKENS, INTEGRATIONS
from scopegate.web.rate_limits import limit_async, page_refusal
from scopegate.web.runtime import runtime
from scopegate.web.transactions import TransactionalRoute, unit_of_work
from scopegate.web.ui.rendering import problem_page, render
from scopegate.web.ui.session import WebUser, check_form_csrf, org_access, web_user

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)
Csrf = Annotated[str, Form(max_length=128)]
OrgSlug = Annotated[str, Path(max_length=SLUG_MAX)]
Slug = Annotated[str, Path(max_length=SLUG_MAX)]
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1)]
#: Longest value of one editor row (a level name or a scope).
CHOICE_MAX = 32



async def _access(request: Request, me: WebUser, org: str, scope_map: ScopeMap,
                  method: str) -> OrgAccess:
    """My access in ``org`` if ``scope_map`` lets me ``method``; else a ``ServiceError``
    (404 for an organization that is not mine, 403 for a missing scope)."""
    oa = await org_access(request, me, org)
    if not scope_map.decide(method, oa.access.scopes).allowed:
        raise Forbidden("Managing integrations needs org:integrations or org:write "
                        "(admin, manager or owner).")
    return oa


def _may(oa: OrgAccess, scope_map: ScopeMap, method: str) -> bool:
    return scope_map.decide(method, oa.access.scopes).allowed


# -- the list ----------------------------------------------------------------------------
async def _list_page(request: Request, me: WebUser, oa: OrgAccess, status: int = 200,
                     error: str | None = None) -> HTMLResponse:
    rows = await unit_of_work(runtime(request), lambda db: [
        (row, len(integrations.live_tokens(db, row.id)))
        for row in integrations.list_integrations(db, oa.org.id)], writes=False)
    broad_hooks = [row for row, _ in rows
                   if row.kind == DEPLOY_HOOK and row.scopes - deploy_hook.HOOK_SCOPES]
    return render(request, "integrations.html", status, me=me, org=oa.org, rows=rows,
                  ordered=registry.ordered, broad_hooks=broad_hooks, error=error,
                  may_manage=_may(oa, INTEGRATIONS, "POST"))


@router.get("/organizations/{org}/integrations", response_class=HTMLResponse)
async def integrations_page(request: Request, org: OrgSlug,
                            me: WebUser = Depends(web_user)) -> Response:
    try:
        oa = await _access(request, me, org, INTEGRATIONS, "GET")
    except ServiceError as error:
        return problem_page(request, me, error.status, "Integrations", error.detail)
    return await _list_page(request, me, oa)


@router.post("/organizations/{org}/integrations", response_class=HTMLResponse)
async def create_integration(
    request: Request,
    org: OrgSlug,
    name: Annotated[str, Form(max_length=NAME_MAX)],
    csrf_token: Csrf = "",
    me: WebUser = Depends(web_user),
) -> Response:
    """Create an integration holding nothing, then open its permission editor."""
    check_form_csrf(request, me, csrf_token)
    try:
        oa = await _access(request, me, org, INTEGRATIONS, "POST")
        row = await unit_of_work(runtime(request), lambda db: integrations.create_integration(
            db, oa.org.id, name, frozenset(), user_id=me.user.id), writes=True)
    except Forbidden as error:
        return problem_page(request, me, error.status, "Integrations", error.detail)
    except ServiceError as error:
        if error.status == 404:
            return problem_page(request, me, 404, "Integrations", error.detail)
        return await _list_page(request, me, oa, error.status, error.detail)
    return RedirectResponse(f"/organizations/{oa.org.slug}/integrations/{row.slug}",
                            status_code=303)


@router.post("/organizations/{org}/deploy-hook/narrow")
async def narrow_deploy_hooks(request: Request, org: OrgSlug, csrf_token: Csrf = "",
                              me: WebUser = Depends(web_user)) -> Response:
    """Narrow deploy-hook installations made with broader scopes to ``org:ci`` (their
    tokens are kept; an audit event per installation)."""
    check_form_csrf(request, me, csrf_token)
    try:
        oa = await _access(request, me, org, INTEGRATION, "PUT")
    except ServiceError as error:
        return problem_page(request, me, error.status, "Integrations", error.detail)
    await unit_of_work(runtime(request), lambda db: deploy_hook.narrow_installations(
        db, oa.org.id, user_id=me.user.id), writes=True)
    return RedirectResponse(f"/organizations/{oa.org.slug}/integrations", status_code=303)


# -- the permission editor -----------------------------------------------------------------
async def _editor(request: Request, me: WebUser, oa: OrgAccess, slug: str, *,
                  status: int = 200, error: str | None = None, saved: bool = False,
                  new_token: str | None = None) -> HTMLResponse:
    def load(db: Session) -> tuple[object, list[object]]:
        row = integrations.get_integration(db, oa.org.id, slug)
        tokens = (integrations.live_tokens(db, row.id)
                  if _may(oa, INTEGRATION_TOKENS, "GET") else [])
        return row, tokens

    row, tokens = await unit_of_work(runtime(request), load, writes=False)
    return render(
        request, "integration.html", status, me=me, org=oa.org, integration=row,
        tokens=tokens, rows=permission_editor.ROWS,
        selection=permission_editor.selection(row.scopes),  # type: ignore[attr-defined]
        scopes=registry.ordered(row.scopes),  # type: ignore[attr-defined]
        may_edit=_may(oa, INTEGRATION, "PUT"), may_tokens=_may(oa, INTEGRATION_TOKENS, "POST"),
        error=error, saved=saved, new_token=new_token,
    )


@router.get("/organizations/{org}/integrations/{slug}", response_class=HTMLResponse)
async def editor_page(request: Request, org: OrgSlug, slug: Slug,
                      me: WebUser = Depends(web_user)) -> Response:
    try:
        oa = await _access(request, me, org, INTEGRATION, "GET")
        return await _editor(request, me, oa, slug)
    except ServiceError as error:
        return problem_page(request, me, error.status, "Integration", error.detail)


def _submitted(form: dict[str, str]) -> frozenset[str]:
    if any(len(value) > CHOICE_MAX for value in form.values()):
        raise Invalid("an option is too long")
    try:
        return permission_editor.scopes_from(form)
    except permission_editor.InvalidChoice as error:
        raise Invalid(str(error)) from None


@router.post("/organizations/{org}/integrations/{slug}", response_class=HTMLResponse)
async def save_editor(request: Request, org: OrgSlug, slug: Slug,
                      me: WebUser = Depends(web_user)) -> Response:
    """Save the editor: the name, and the scopes its rows grant."""
    form = await request.form(max_fields=len(permission_editor.ROWS) + 8, max_files=0)
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    check_form_csrf(request, me, fields.pop("csrf_token", ""))
    name = fields.pop("name", None)
    try:
        oa = await _access(request, me, org, INTEGRATION, "PUT")
    except ServiceError as error:
        return problem_page(request, me, error.status, "Integration", error.detail)

    def save(db: Session) -> None:
        row = integrations.get_integration(db, oa.org.id, slug)
        scopes = _submitted(fields)
        integrations.check_raise(oa.access, row.scopes, scopes)
        if name is not None and name.strip() != row.name:
            integrations.rename(db, row, name)
        if scopes != row.scopes:
            integrations.set_scopes(db, row, scopes, user_id=me.user.id)

    try:
        await unit_of_work(runtime(request), save, writes=True)
    except ServiceError as error:
        if error.status == 404:
            return problem_page(request, me, 404, "Integration", error.detail)
        return await _editor(request, me, oa, slug, status=error.status, error=error.detail)
    return await _editor(request, me, oa, slug, saved=True)


@router.post("/organizations/{org}/integrations/{slug}/tokens", response_class=HTMLResponse)
async def create_token(request: Request, org: OrgSlug, slug: Slug, csrf_token: Csrf = "",
                       name: Annotated[str, Form(max_length=NAME_MAX)] = "",
                       me: WebUser = Depends(web_user)) -> Response:
    """A new token; its secret is on this answer only."""
    check_form_csrf(request, me, csrf_token)
    try:
        await limit_async(request, RateLimitedAction.TOKEN_CREATE, account=f"user:{me.user.id}")
    except RateRefused as refused:
        return page_refusal(request, refused, me)
    try:
        oa = await _access(request, me, org, INTEGRATION_TOKENS, "POST")
        minted = await unit_of_work(runtime(request), lambda db: integrations.create_token(
            db, integrations.get_integration(db, oa.org.id, slug), name=name,
            user_id=me.user.id), writes=True)
        return await _editor(request, me, oa, slug, status=201, new_token=minted.token)
    except ServiceError as error:
        return problem_page(request, me, error.status, "Integration", error.detail)


@router.post("/organizations/{org}/integrations/{slug}/tokens/{token_id}/revoke")
async def revoke_token(request: Request, org: OrgSlug, slug: Slug, token_id: TokenId,
                       csrf_token: Csrf = "", me: WebUser = Depends(web_user)) -> Response:
    check_form_csrf(request, me, csrf_token)
    try:
        oa = await _access(request, me, org, INTEGRATION_TOKENS, "DELETE")
        await unit_of_work(runtime(request), lambda db: integrations.revoke_token(
            db, integrations.get_integration(db, oa.org.id, slug), token_id,
            user_id=me.user.id), writes=True)
    except ServiceError as error:
        return problem_page(request, me, error.status, "Integration", error.detail)
    return RedirectResponse(f"/organizations/{oa.org.slug}/integrations/{slug}",
                            status_code=303)


@router.post("/organizations/{org}/integrations/{slug}/delete")
async def delete_integration(request: Request, org: OrgSlug, slug: Slug,
                             csrf_token: Csrf = "",
                             me: WebUser = Depends(web_user)) -> Response:
    check_form_csrf(request, me, csrf_token)
    try:
        oa = await _access(request, me, org, INTEGRATION, "DELETE")
        await unit_of_work(runtime(request), lambda db: integrations.delete_integration(
            db, integrations.get_integration(db, oa.org.id, slug), user_id=me.user.id),
            writes=True)
    except ServiceError as error:
        return problem_page(request, me, error.status, "Integration", error.detail)
    return RedirectResponse(f"/organizations/{oa.org.slug}/integrations", status_code=303)
