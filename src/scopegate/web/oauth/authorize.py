"""The authorization endpoint (RFC 6749 §3.1) and its consent page.

``GET /oauth/authorize`` validates the request first: a bad ``client_id`` or
``redirect_uri`` gets an error page and is never redirected (RFC 9700 §4.11); any other
error goes back to the client's redirect URI with ``state`` and ``iss`` (RFC 9207).
A valid request needs a signed-in person (else the login page, then back here) and
shows the consent page. Its form POSTs back here with the same parameters, the CSRF
token, the chosen organizations and the decision; the answer is a 303 to the client.
In proxy mode people sign in upstream instead: a valid request goes to the client
approval page (``web/oauth/proxy_pages.py``). Refusals: ``web/oauth/refusals.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error
from fastapi import APIRouter
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from scopegate.core import scopes as registry
from scopegate.services.errors import Invalid
from scopegate.services.oauth import consent
from scopegate.services.oauth.metadata import ENDPOINTS
from scopegate.services.oauth.metadata_documents import is_metadata_url
from scopegate.services.oauth.server import (
    AuthorizationServer,
    OAuthRequest,
    OAuthResponse,
    Person,
)
from scopegate.web.oauth import adapter, proxy_pages
from scopegate.web.oauth.refusals import problem, refused
from scopegate.web.runtime import runtime
from scopegate.web.security_headers import page_policy_sending_forms_to
from scopegate.web.transactions import TransactionalRoute, unit_of_work
from scopegate.web.ui.approvals import scope_rows
from scopegate.web.ui.rendering import render
from scopegate.web.ui.session import WebUser, check_form_csrf, web_user

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)
PATH = ENDPOINTS["authorization_endpoint"]
#: Form fields of the consent page that are not OAuth parameters.
PAGE_FIELDS = frozenset({"csrf_token", "decision", "orgs", "capabilities"})
_RESPONSE_TYPE = re.compile(r"[a-z_ ]{1,64}")


@dataclass
class _Page:
    """What the consent page shows."""

    grant: Any
    choices: list[consent.OrgChoice]
    error: str | None = None


@dataclass
class _Submitted:
    """The consent form: the OAuth parameters, and the page's own fields."""

    oauth: OAuthRequest
    csrf_token: str | None
    decision: str | None
    orgs: list[str]
    #: Proxy mode's approval page: the capabilities chosen.
    capabilities: list[str]


def _writes(oauth_request: OAuthRequest) -> bool:
    # A client named by a metadata document is fetched and kept: a write, off the loop.
    return is_metadata_url(oauth_request.payload.client_id or "")


async def _read(request: Request) -> _Submitted | Response:
    try:
        query = await adapter.read_request(request, with_query=request.method == "GET")
    except adapter.BadParameters as bad:
        return problem(request, None, bad.description)
    response_type = query.payload.data.get("response_type", "")
    if not _RESPONSE_TYPE.fullmatch(response_type):
        # Authlib quotes the response type in its error; refuse odd ones before it does.
        return problem(request, None, "response_type must be 'code'.")
    pairs = [(k, v) for k, values in query.payload.datalist.items() for v in values]
    oauth = OAuthRequest(request.method, query.uri, query.headers,
                         pairs if request.method == "GET" else (),
                         [p for p in pairs if p[0] not in PAGE_FIELDS]
                         if request.method == "POST" else ())
    page = query.payload.data
    return _Submitted(oauth, page.get("csrf_token"), page.get("decision"),
                      query.payload.datalist.get("orgs", []),
                      query.payload.datalist.get("capabilities", []))


def _consent_page(request: Request, me: WebUser, oauth_request: OAuthRequest, page: _Page,
                  status: int = 200) -> Response:
    client = page.grant.client
    requested = registry.parse(oauth_request.scope or "")
    hidden = [(k, v) for k, values in oauth_request.payload.datalist.items()
              if k not in PAGE_FIELDS for v in values]
    response = render(
        request, "consent.html", status, me=me, client=client, action=PATH, user_code=None,
        redirect_host=urlsplit(page.grant.redirect_uri).netloc, hidden=hidden,
        rows=scope_rows(request, requested, consent.held(page.choices)), choices=page.choices,
        grantable=bool(requested & consent.held(page.choices)), error=page.error,
    )
    response.headers["Content-Security-Policy"] = page_policy_sending_forms_to(
        page.grant.redirect_uri)
    return response


@router.get(PATH)
async def authorize(request: Request) -> Response:
    submitted = await _read(request)
    if isinstance(submitted, Response):
        return submitted
    oauth_request, rt = submitted.oauth, runtime(request)
    if rt.settings.proxy_mode:  # people sign in upstream: the client approval page
        return await proxy_pages.show(request, oauth_request, _writes(oauth_request))
    try:
        grant = await unit_of_work(rt, lambda db: AuthorizationServer(db, rt.oauth)
                                   .get_consent_grant(oauth_request),
                                   writes=_writes(oauth_request))
    except OAuth2Error as error:
        return refused(request, None, error)
    me = await web_user(request)  # LoginRequired: to the login page, then back here
    choices = await unit_of_work(rt, lambda db: consent.org_choices(db, me.user.id),
                                 writes=False)
    return _consent_page(request, me, oauth_request, _Page(grant, choices))


@router.post(PATH)
async def decide(request: Request) -> Response:
    if runtime(request).settings.proxy_mode:
        return await _decide_in_proxy_mode(request)
    me = await web_user(request)
    submitted = await _read(request)
    if isinstance(submitted, Response):
        return submitted
    check_form_csrf(request, me, submitted.csrf_token)
    oauth_request, rt = submitted.oauth, runtime(request)

    def work(db: Session) -> Response | _Page | OAuthResponse:
        server = AuthorizationServer(db, rt.oauth)
        try:
            grant = server.get_consent_grant(oauth_request)
        except OAuth2Error as error:
            return refused(request, me, error)
        if submitted.decision == "deny":
            return server.create_authorization_response(oauth_request, None, grant)
        if submitted.decision != "approve":
            return problem(request, me, "Choose Approve or Deny.")
        choices = consent.org_choices(db, me.user.id)
        try:
            oauth_request.consent = consent.decide(
                me.user.id, registry.parse(oauth_request.scope or ""), choices,
                submitted.orgs, org_bound=grant.client.org_bound)
        except Invalid as error:
            return _Page(grant, choices, error.detail)
        return server.create_authorization_response(oauth_request, Person(me.user.id), grant)

    outcome = await unit_of_work(rt, work, writes=True)
    if isinstance(outcome, _Page):
        return _consent_page(request, me, oauth_request, outcome, status=400)
    if isinstance(outcome, Response):
        return outcome
    return adapter.to_response(outcome)



async def _decide_in_proxy_mode(request: Request) -> Response:
    submitted = await _read(request)
    if isinstance(submitted, Response):
        return submitted
    return await proxy_pages.decide(request, submitted.oauth, submitted.csrf_token,
                                    submitted.decision, submitted.capabilities,
                                    _writes(submitted.oauth))
