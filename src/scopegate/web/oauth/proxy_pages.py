"""Proxy mode's side of ``/oauth/authorize``, and ``/oauth/callback``.

``GET /oauth/authorize`` validates the MCP client's request like direct mode does (a bad
client or redirect URI gets an error page, never a redirect; PKCE S256; the resource
must be ``<base>/mcp``), then shows the **client approval page**: the client's name, the
host it returns to, and the capabilities it may get (read-only preselected). A client
this browser approved before (``approval_cookie``) goes straight on. Approving sets the
cookie, starts a trip (``services/oauth/proxy.py``) and redirects upstream with PKCE,
asking for only the chosen capabilities' scopes.

``GET /oauth/callback`` claims the trip's state (signature, 10 minutes, once), requires
this browser's approval of the client, exchanges the upstream code, seals the upstream
tokens, and redirects to the MCP client with the front door's own code, its ``state``
and ``iss``. Anything wrong is a plain error page; details go to the log.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error
from fastapi import APIRouter
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from scopegate.core import mcp_capabilities as caps
from scopegate.services.mcp.upstream import UpstreamRefused
from scopegate.services.oauth import proxy, resources
from scopegate.services.oauth.server import AuthorizationServer, OAuthRequest
from scopegate.store.oauth_models import URI_MAX
from scopegate.web.mcp.front_door import front_door
from scopegate.web.oauth import adapter
from scopegate.web.oauth.refusals import problem, refused
from scopegate.web.runtime import runtime
from scopegate.web.security_headers import page_policy_sending_forms_to
from scopegate.web.transactions import TransactionalRoute, unit_of_work
from scopegate.web.ui.rendering import render

log = logging.getLogger("scopegate.mcp")
router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)
CALLBACK_PATH = "/oauth/callback"
CSRF_COOKIE = "sg_mcp_csrf"
PAGE_FIELDS = frozenset({"csrf_token", "decision", "capabilities"})


def _problem(request: Request, message: str, status: int = 400) -> Response:
    return problem(request, None, message, status, title="Sign-in stopped")


def _validated(db: Session, oauth_request: OAuthRequest, request: Request) -> Any:
    """Authlib's validation of the authorization request, plus: only ``/mcp``."""
    rt = runtime(request)
    grant = AuthorizationServer(db, rt.oauth).get_consent_grant(oauth_request)
    error: OAuth2Error | None = None
    if grant.request.resource != rt.settings.mcp_resource:
        error = resources.InvalidTargetError()
        error.state = oauth_request.payload.state
    elif len(oauth_request.payload.state or "") > URI_MAX:  # kept with the trip
        error = InvalidRequestError("The state parameter is too long.")
    if error is not None:
        error.redirect_uri = grant.redirect_uri
        raise error
    return grant


async def show(request: Request, oauth_request: OAuthRequest, writes: bool) -> Response:
    """``GET /oauth/authorize`` in proxy mode."""
    rt = runtime(request)
    try:
        grant = await unit_of_work(rt, lambda db: _validated(db, oauth_request, request),
                                   writes=writes)
    except OAuth2Error as error:
        return refused(request, None, error)
    remembered = front_door(request).approval_cookie.approved(request, grant.client.client_id)
    if remembered is not None:
        return await _to_upstream(request, grant, oauth_request, remembered)
    return await _page(request, grant, oauth_request, caps.DEFAULT)


async def _page(request: Request, grant: Any, oauth_request: OAuthRequest,
                chosen: frozenset[caps.Capability], error: str | None = None,
                status: int = 200) -> Response:
    front = front_door(request)
    if front.upstream is None:
        return _problem(request, "This server does not sign in through another server.", 404)
    token = secrets.token_urlsafe(24)
    hidden = [(k, v) for k, values in oauth_request.payload.datalist.items()
              if k not in PAGE_FIELDS for v in values]
    rows = [{"name": c.value, "description": caps.DESCRIPTIONS[c], "tools": caps.TOOLS[c],
             "scopes": caps.SCOPES[c], "checked": c in chosen,
             "required": c is caps.Capability.INSPECT} for c in caps.Capability]
    response = render(request, "mcp_approval.html", status, me=None, client=grant.client,
                      action="/oauth/authorize", hidden=hidden, capabilities=rows,
                      csrf_token=token, error=error,
                      redirect_host=urlsplit(grant.redirect_uri).netloc,
                      upstream_host=urlsplit(front.upstream.issuer).netloc)
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", path="/oauth",
                        secure=runtime(request).settings.secure_cookies, max_age=3600)
    response.headers["Content-Security-Policy"] = page_policy_sending_forms_to(
        grant.redirect_uri, front.upstream.issuer)
    return response


async def decide(request: Request, oauth_request: OAuthRequest, csrf_token: str | None,
                 decision: str | None, capabilities: list[str], writes: bool) -> Response:
    """``POST /oauth/authorize`` in proxy mode: the approval page's answer."""
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not csrf_token or not hmac.compare_digest(
            expected.encode(), csrf_token.encode()):
        return _problem(request, "The form expired or did not come from this page. "
                        "Start the sign-in again from your client.", 403)
    rt = runtime(request)

    def validate_or_deny(db: Session) -> Any:
        grant = _validated(db, oauth_request, request)
        if decision == "deny":
            server = AuthorizationServer(db, rt.oauth)
            return server.create_authorization_response(oauth_request, None, grant)
        return grant

    try:
        outcome = await unit_of_work(rt, validate_or_deny, writes=writes)
    except OAuth2Error as error:
        return refused(request, None, error)
    if decision == "deny":
        return adapter.to_response(outcome)
    if decision != "approve":
        return await _page(request, outcome, oauth_request, caps.DEFAULT,
                           "Choose Approve or Deny.", 400)
    try:
        chosen = caps.parse(capabilities[:len(caps.Capability)])
    except ValueError as error:
        return await _page(request, outcome, oauth_request, caps.DEFAULT, str(error), 400)
    chosen = chosen | {caps.Capability.INSPECT}
    response = await _to_upstream(request, outcome, oauth_request, chosen)
    if response.status_code == 303:  # on the way upstream: remember the approval
        front_door(request).approval_cookie.add(request, response, outcome.client.client_id,
                                                chosen)
    return response


async def _to_upstream(request: Request, grant: Any, oauth_request: OAuthRequest,
                       chosen: frozenset[caps.Capability]) -> Response:
    front = front_door(request)
    if front.upstream is None:
        return _problem(request, "This server does not sign in through another server.", 404)
    rt = runtime(request)
    data = oauth_request.payload.data
    state, verifier = await unit_of_work(rt, lambda db: front.states.begin(
        db, client=grant.client, redirect_uri=grant.redirect_uri,
        client_state=data.get("state"), code_challenge=data["code_challenge"],
        capabilities=chosen), writes=True)
    try:
        url = await front.upstream.authorization_url(
            state=state, code_verifier=verifier, scopes=caps.scopes_for(chosen))
    except UpstreamRefused:
        return _problem(request, "The sign-in server is not reachable. Try again shortly.",
                        503)
    return RedirectResponse(url, status_code=303)


@router.get(CALLBACK_PATH)
async def callback(request: Request) -> Response:
    """Where the upstream server sends the person back (proxy mode only)."""
    front = front_door(request)
    rt = runtime(request)
    if front.upstream is None:
        return _problem(request, "This server does not sign in through another server.", 404)
    params = request.query_params
    if len(str(request.url.query)) > 4096 or any(
            len(params.getlist(k)) > 1 for k in ("code", "state", "iss", "error")):
        return _problem(request, "The sign-in answer is malformed.")
    state = params.get("state") or ""
    try:
        trip = await unit_of_work(rt, lambda db: front.states.claim(db, state), writes=True)
    except proxy.StateRefused as refused:
        log.info("proxy callback refused: %s", refused)
        return _problem(request, "This sign-in link is invalid, expired or was already used. "
                        "Start the sign-in again from your client.")
    if front.approval_cookie.approved(request, trip.client_id) is None:
        log.info("proxy callback without this browser's approval of the client")
        return _problem(request, "This browser did not approve the client this sign-in is "
                        "for. Start the sign-in again from your client.", 403)
    back = {"state": trip.client_state} if trip.client_state else {}
    if params.get("error") or not params.get("code"):
        return _back(request, trip.redirect_uri, {"error": "access_denied", **back},
                     rt.settings.issuer)
    issuer = params.get("iss")
    if issuer is not None and issuer != front.upstream.issuer:
        log.warning("proxy callback with another issuer (mix-up?)")
        return _problem(request, "The sign-in answer came from an unexpected server.")
    try:
        upstream = await front.upstream.exchange(params["code"], trip.upstream_verifier)
    except UpstreamRefused as refused:
        log.info("upstream code exchange refused: %s", refused.error)
        return _back(request, trip.redirect_uri, {"error": "access_denied", **back},
                     rt.settings.issuer)
    code = await unit_of_work(rt, lambda db: proxy.finish(
        db, trip, upstream, resource=rt.settings.mcp_resource,
        code_seconds=rt.settings.oauth_code_seconds), writes=True)
    return _back(request, trip.redirect_uri, {"code": code, **back}, rt.settings.issuer)


def _back(request: Request, redirect_uri: str, params: dict[str, str],
          issuer: str) -> Response:
    """Back to the MCP client, by a page that navigates there (a refresh and a link), not
    a 303: this request ends a chain of redirects that began with the upstream's consent
    form, and browsers hold each redirect of a form submission to that page's CSP
    ``form-action`` (the upstream's, which names us, not the client)."""
    url = add_params_to_uri(redirect_uri, [*params.items(), ("iss", issuer)])
    response = render(request, "mcp_continue.html", 200, me=None, url=url,
                      host=urlsplit(redirect_uri).netloc,
                      headline="Signed in." if "code" in params else "Sign-in stopped.")
    response.headers["Cache-Control"] = "no-store"
    return response
