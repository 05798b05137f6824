"""Pages: the OAuth apps I registered (``/apps``) and the apps I authorized
(``/apps/authorized``). Forms carry the CSRF token; a secret is shown once, on the page
that answers the form that made it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from scopegate.services.errors import ServiceError
from scopegate.services.oauth import clients, tokens
from scopegate.store.models import NAME_MAX
from scopegate.store.oauth_models import CLIENT_ID_MAX, URI_MAX
from scopegate.web.runtime import runtime
from scopegate.web.transactions import TransactionalRoute, get_db, unit_of_work
from scopegate.web.ui.rendering import render
from scopegate.web.ui.session import WebUser, check_form_csrf, web_user

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)
Csrf = Annotated[str, Form(max_length=128)]
ClientId = Annotated[str, Form(max_length=CLIENT_ID_MAX)]


def _apps_page(request: Request, me: WebUser, apps: list[clients.Client],
               error: str | None = None, status: int = 200) -> HTMLResponse:
    return render(request, "apps.html", status, me=me, apps=apps, error=error)


@router.get("/apps", response_class=HTMLResponse)
def apps_page(request: Request, me: WebUser = Depends(web_user),
              db: Session = Depends(get_db)) -> HTMLResponse:
    return _apps_page(request, me, clients.list_apps(db, me.user.id))


@router.post("/apps", response_class=HTMLResponse)
async def register_app(
    request: Request,
    name: Annotated[str, Form(max_length=NAME_MAX)],
    redirect_uris: Annotated[str, Form(max_length=(URI_MAX + 2) * clients.MAX_REDIRECT_URIS)],
    csrf_token: Csrf = "",
    homepage: Annotated[str, Form(max_length=URI_MAX)] = "",
    public: Annotated[str, Form(max_length=8)] = "",
    org_bound: Annotated[str, Form(max_length=8)] = "",
    me: WebUser = Depends(web_user),
) -> Response:
    check_form_csrf(request, me, csrf_token)
    rt = runtime(request)
    uris = [line.strip() for line in redirect_uris.splitlines() if line.strip()]
    try:
        new = await unit_of_work(rt, lambda db: clients.create_app(
            db, owner_id=me.user.id, name=name, homepage=homepage.strip(), redirect_uris=uris,
            public=bool(public), org_bound=bool(org_bound)), writes=True)
    except ServiceError as error:  # the rule broken, never the input
        apps = await unit_of_work(rt, lambda db: clients.list_apps(db, me.user.id),
                                  writes=False)
        return _apps_page(request, me, apps, error.detail, 400)
    return render(request, "app_created.html", 201, me=me, app=new.client,
                  secret=new.client_secret)


@router.post("/apps/rotate-secret", response_class=HTMLResponse)
async def rotate_app_secret(request: Request, client_id: ClientId, csrf_token: Csrf = "",
                            me: WebUser = Depends(web_user)) -> Response:
    check_form_csrf(request, me, csrf_token)
    try:
        new = await unit_of_work(runtime(request), lambda db: clients.rotate_secret(
            db, me.user.id, client_id), writes=True)
    except ServiceError as error:
        return render(request, "error.html", error.status, me=me, title="Could not rotate",
                      message=error.detail)
    return render(request, "app_created.html", me=me, app=new.client, secret=new.client_secret)


@router.post("/apps/delete")
async def delete_app(request: Request, client_id: ClientId, csrf_token: Csrf = "",
                     me: WebUser = Depends(web_user)) -> Response:
    check_form_csrf(request, me, csrf_token)
    rt = runtime(request)
    try:
        await unit_of_work(rt, lambda db: clients.delete_app(
            db, rt.deny_list, me.user.id, client_id), writes=True)
    except ServiceError as error:
        return render(request, "error.html", error.status, me=me, title="Could not delete",
                      message=error.detail)
    return RedirectResponse("/apps", status_code=303)


@router.get("/apps/authorized", response_class=HTMLResponse)
def authorized_apps(request: Request, me: WebUser = Depends(web_user),
                    db: Session = Depends(get_db)) -> HTMLResponse:
    return render(request, "authorized_apps.html", me=me,
                  authorizations=tokens.list_authorizations(db, me.user.id))


@router.post("/apps/authorized/revoke")
async def revoke_authorized_app(request: Request, client_id: ClientId, csrf_token: Csrf = "",
                                me: WebUser = Depends(web_user)) -> Response:
    check_form_csrf(request, me, csrf_token)
    rt = runtime(request)
    await unit_of_work(rt, lambda db: tokens.revoke_authorization(
        db, rt.deny_list, me.user.id, client_id), writes=True)
    return RedirectResponse("/apps/authorized", status_code=303)
