"""The OAuth endpoints that speak JSON: metadata, token, revoke, introspect, register,
device authorization. Paths are a fixed public interface (``services/oauth/metadata.py``).

Each reads and bounds its parameters, then hands Authlib one unit of work
(``adapter.answer``). Parameters Authlib would quote in an error description are
checked here first, so no answer echoes a caller's text.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import unquote

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from scopegate.core.rate_limits import RateLimitedAction
from scopegate.services.oauth import clients
from scopegate.services.oauth.metadata import ENDPOINTS, server_metadata
from scopegate.services.oauth.server import OAuthJsonRequest
from scopegate.services.rate_limiter import RateRefused
from scopegate.web.mcp.front_door import front_door
from scopegate.web.oauth import adapter
from scopegate.web.oauth.basic_auth import MalformedBasic, basic_pair
from scopegate.web.rate_limits import limit_async, oauth_refusal, off_loop
from scopegate.web.runtime import runtime
from scopegate.web.transactions import TransactionalRoute

router = APIRouter(route_class=TransactionalRoute, tags=["oauth"])
TOKEN_HINTS = frozenset({"access_token", "refresh_token"})


def _body(media_type: str, required: list[str], fields: dict[str, str]) -> dict[str, Any]:
    """An ``openapi_extra`` describing a body these endpoints read themselves."""
    schema = {"type": "object", "required": required,
              "properties": {name: {"type": "string", "description": text}
                             for name, text in fields.items()}}
    return {"requestBody": {"required": True, "content": {media_type: {"schema": schema}}}}


_FORM = "application/x-www-form-urlencoded"
_CLIENT = {"client_id": "public clients (or client_secret_post)",
           "client_secret": "client_secret_post; or HTTP Basic (client_secret_basic)"}
TOKEN_BODY = _body(_FORM, ["grant_type"], {
    "grant_type": "authorization_code, refresh_token or "
                  "urn:ietf:params:oauth:grant-type:device_code",
    "code": "authorization_code", "redirect_uri": "authorization_code",
    "code_verifier": "authorization_code (PKCE S256)", "refresh_token": "refresh_token",
    "scope": "refresh_token: a subset of the granted scopes", "device_code": "device_code",
    "resource": "RFC 8707: the resource the token is for", **_CLIENT})
TOKEN_TYPE_BODY = _body(_FORM, ["token"], {
    "token": "an access (sgp_) or refresh (sgr_) token",
    "token_type_hint": "access_token or refresh_token", **_CLIENT})
INTROSPECT_BODY = _body(_FORM, ["token"], {
    "token": "an OAuth client: one of its access (sgp_) or refresh (sgr_) tokens; a "
             "resource server: a credential its caller presented (sgu_, sgo_, sgi_, or an "
             "sgp_ issued for its audience)",
    "token_type_hint": "access_token or refresh_token", **_CLIENT})
DEVICE_BODY = _body(_FORM, ["client_id"], {
    "scope": "space-separated scopes", "resource": "RFC 8707", **_CLIENT})
REGISTER_BODY = _body("application/json", ["redirect_uris"], {
    "redirect_uris": "array of https (or, for native apps, loopback http) URIs",
    "client_name": "shown on the consent page", "client_uri": "homepage",
    "token_endpoint_auth_method": "none, client_secret_basic or client_secret_post",
    "grant_types": "array", "application_type": "web or native", "scope": "space-separated"})


@router.get("/.well-known/oauth-authorization-server")
async def authorization_server_metadata(request: Request) -> Response:
    """RFC 8414: what this authorization server supports."""
    body = orjson.dumps(server_metadata(runtime(request).settings))
    return Response(body, media_type="application/json",
                    headers={"Cache-Control": "public, max-age=300"})


async def _read(request: Request) -> Any:
    try:
        return await adapter.read_request(request, with_query=False)
    except adapter.BadParameters as bad:
        return adapter.invalid_request(bad.description)


def _client_id(request: Request, form: dict[str, Any]) -> str | None:
    """The client the request names (form ``client_id``, else HTTP Basic's user), not
    yet authenticated."""
    named = form.get("client_id")
    if isinstance(named, str) and named:
        return named
    try:
        pair = basic_pair(request.headers.get("authorization"))
    except MalformedBasic:
        return None
    if pair is None:
        return None
    return unquote(pair[0]) or None


@router.post(ENDPOINTS["token_endpoint"], openapi_extra=TOKEN_BODY)
async def token(request: Request) -> Response:
    """RFC 6749 §3.2: code, refresh token and device code exchanges. Rate limited per
    address, and per client for the tokens it was issued (counted after issuing, so
    naming a client does not spend its budget)."""
    limiter = runtime(request).rate_limiter
    action = RateLimitedAction.OAUTH_TOKEN
    try:
        await limit_async(request, action)
    except RateRefused as refused:
        return oauth_refusal(refused)
    oauth_request = await _read(request)
    if isinstance(oauth_request, Response):
        return oauth_request
    grant_type = oauth_request.payload.data.get("grant_type")
    if grant_type not in clients.GRANT_TYPES:
        return adapter.to_response(adapter.OAuthResponse(400, {
            "error": "unsupported_grant_type",
            "error_description": "grant_type must be one of: " + ", ".join(clients.GRANT_TYPES),
        }))
    if any(len(v) > 1 for v in oauth_request.payload.datalist.values()):
        return adapter.invalid_request("Each parameter may be sent once.")
    proxy = front_door(request).proxy
    if proxy is not None and grant_type == "refresh_token":
        # Proxy mode: the upstream tokens first (single-flight); a terminal refusal
        # revokes the grant, and the refresh below then fails with invalid_grant.
        await proxy.refresh_upstream(oauth_request.payload.data.get("refresh_token") or "")
    client = _client_id(request, oauth_request.payload.data)
    if client is not None:
        try:
            await off_loop(request, functools.partial(limiter.peek, action, "client:" + client))
        except RateRefused as refused:
            return oauth_refusal(refused)
    answer = await adapter.answer(request, lambda s: s.create_token_response(oauth_request))
    if client is not None and answer.status == 200:
        await off_loop(request, functools.partial(limiter.charge, action, "client:" + client))
    return adapter.to_response(answer)


async def _token_endpoint(request: Request, name: str) -> Response:
    oauth_request = await _read(request)
    if isinstance(oauth_request, Response):
        return oauth_request
    hint = oauth_request.payload.data.get("token_type_hint")
    if hint is not None and hint not in TOKEN_HINTS:
        return adapter.to_response(adapter.OAuthResponse(400, {
            "error": "unsupported_token_type",
            "error_description": "token_type_hint must be access_token or refresh_token"}))
    answer = await adapter.answer(request, lambda s: s.create_endpoint_response(
        name, oauth_request))
    return adapter.to_response(answer)


@router.post(ENDPOINTS["revocation_endpoint"], openapi_extra=TOKEN_TYPE_BODY)
async def revoke(request: Request) -> Response:
    """RFC 7009: a client revokes one of its tokens (a refresh token ends its grant)."""
    return await _token_endpoint(request, "revocation")


@router.post(ENDPOINTS["introspection_endpoint"], openapi_extra=INTROSPECT_BODY)
async def introspect(request: Request) -> Response:
    """RFC 7662: a confidential client asks about one of its own tokens; a resource
    server (``scopegate resource-server add``) about a credential presented to it, and
    learns the organizations it may act in with its effective scopes there."""
    return await _token_endpoint(request, "introspection")


@router.post(ENDPOINTS["device_authorization_endpoint"], openapi_extra=DEVICE_BODY)
async def device_authorization(request: Request) -> Response:
    """RFC 8628 §3.1: a device asks for a device code and a user code."""
    try:
        await limit_async(request, RateLimitedAction.DEVICE_CODE)
    except RateRefused as refused:
        return oauth_refusal(refused)
    oauth_request = await _read(request)
    if isinstance(oauth_request, Response):
        return oauth_request
    answer = await adapter.answer(request, lambda s: s.create_endpoint_response(
        "device_authorization", oauth_request))
    return adapter.to_response(answer)


@router.post(ENDPOINTS["registration_endpoint"], status_code=201,
             openapi_extra=REGISTER_BODY)
async def register(request: Request) -> Response:
    """RFC 7591: register a client (open; an unused registration expires)."""
    try:
        await limit_async(request, RateLimitedAction.CLIENT_REGISTRATION)
    except RateRefused as refused:
        return oauth_refusal(refused)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        data = orjson.loads(await request.body()) if content_type == "application/json" else None
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return adapter.to_response(adapter.OAuthResponse(400, {
            "error": "invalid_client_metadata",
            "error_description": "Send the client metadata as a JSON object."}))
    rt = runtime(request)
    json_request = OAuthJsonRequest("POST", rt.settings.base_url + request.url.path,
                                    request.headers, data)
    answer = await adapter.answer(request, lambda s: s.create_endpoint_response(
        "client_registration", json_request))
    return adapter.to_response(answer)
