"""Starlette <-> Authlib: the web half of the integration Authlib does not ship.

``read_request`` turns a Starlette request into ``services/oauth/server.py``'s
``OAuthRequest`` (the URI built from the configured base URL, never the ``Host``
header; every parameter bounded); ``to_response`` turns Authlib's answer into a
response. ``answer`` runs a server call as one unit of work: a server is built on that
unit's session, and what it writes (codes, tokens, revocations) commits with it, even
when the answer is an OAuth error (a replayed code's revocation must stick).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from authlib.oauth2.rfc6749 import InsecureTransportError, OAuth2Error
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from scopegate.services.oauth.server import (
    PARAMETER_MAX,
    AuthorizationServer,
    OAuthRequest,
    OAuthResponse,
)
from scopegate.web.oauth.basic_auth import MalformedBasic, basic_pair
from scopegate.web.runtime import runtime
from scopegate.web.transactions import unit_of_work

#: Most parameters (query and form together) one OAuth request may carry.
MAX_PARAMETERS = 64
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class BadParameters(Exception):
    """Too many or too long parameters, or a body that is not a form: ``invalid_request``."""

    def __init__(self, description: str = "Send application/x-www-form-urlencoded "
                 "parameters, at most 64, each at most 2048 characters.") -> None:
        super().__init__(description)
        self.description = description


def _pairs(items: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    pairs = []
    for key, value in items:
        if not isinstance(value, str) or len(key) > 64 or len(value) > PARAMETER_MAX:
            raise BadParameters
        pairs.append((key, value))
    if len(pairs) > MAX_PARAMETERS:
        raise BadParameters
    return pairs


async def form_pairs(request: Request) -> list[tuple[str, str]]:
    """The urlencoded form body as pairs (files and oversized values refused)."""
    if request.method != "POST":
        return []
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise BadParameters
    form: FormData = await request.form(max_files=0, max_fields=MAX_PARAMETERS)
    return _pairs(list(form.multi_items()))


def _check_basic(authorization: str | None) -> None:
    """HTTP Basic credentials Authlib can decode: base64 of UTF-8 (Authlib lets a
    ``UnicodeDecodeError`` escape, which would be a 500)."""
    try:
        basic_pair(authorization)
    except MalformedBasic:
        raise BadParameters("The HTTP Basic credentials are malformed.") from None


async def read_request(request: Request, *, with_query: bool = True) -> OAuthRequest:
    rt = runtime(request)
    _check_basic(request.headers.get("authorization"))
    query = _pairs(list(request.query_params.multi_items())) if with_query else []
    form = await form_pairs(request)
    uri = rt.settings.base_url + request.url.path
    if request.url.query:
        uri += "?" + request.url.query
    try:
        return OAuthRequest(request.method, uri, request.headers, query, form)
    except InsecureTransportError:
        # Authlib's rule: OAuth over https, or http on loopback only (RFC 8252).
        raise BadParameters("OAuth needs an https base URL (SCOPEGATE_BASE_URL), "
                            "or http on a loopback address.") from None


def to_response(answer: OAuthResponse) -> Response:
    headers = dict(answer.headers)
    headers.update(NO_STORE)
    headers.pop("Content-Type", None)
    if isinstance(answer.body, dict):
        return Response(orjson.dumps(answer.body), answer.status, headers,
                        media_type="application/json")
    return Response(answer.body or b"", answer.status, headers)


def error_response(error: OAuth2Error) -> Response:
    status, body, headers = error()
    return to_response(OAuthResponse(status, body, list(headers)))


def invalid_request(description: str) -> Response:
    return to_response(OAuthResponse(400, {"error": "invalid_request",
                                           "error_description": description}))


async def answer(request: Request, call: Callable[[AuthorizationServer], OAuthResponse], *,
                 writes: bool = True) -> OAuthResponse:
    """``call(server)`` in one unit of work on a server bound to its session."""
    rt = runtime(request)

    def work(db: Session) -> OAuthResponse:
        return call(AuthorizationServer(db, rt.oauth))

    return await unit_of_work(rt, work, writes=writes)
