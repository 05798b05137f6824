"""The agent deny list feed: ``GET /oauth/agent-deny-list?since=<unix seconds>``.

A resource server in another process verifies agent tokens (``sga_``) offline against the
JWKS; what it cannot see offline is a revocation (an agent session revoked, a parent
credential revoked or logged out). It polls this feed, authenticated with its resource
server credential (HTTP Basic; ``services/resource_servers.py``), and refuses a token
whose deny keys (``scopegate.core.deny_keys``) are listed::

    200 {"now": 1764790000, "bound_seconds": 2.0,
         "entries": [{"key": "agent-deny:1:12:9c1e…", "revoked_at": 1764789990}],
         "more": false}

Every live entry revoked at or after ``since`` (default 0), oldest first, at most 10,000;
``more`` says to ask again with ``since`` = the last ``revoked_at`` (entries of that second
come again). ``bound_seconds`` is this server's ``SCOPEGATE_CACHE_SECONDS``: a guard that
polled successfully within it is as fresh as an in-process cache. Any other caller gets
401 ``invalid_client`` with a ``Basic`` challenge; a bad ``since``, 400.
"""

from __future__ import annotations

import re
import time
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from scopegate.services import deny_list
from scopegate.services.oauth import clients
from scopegate.services.oauth.metadata_documents import is_metadata_url
from scopegate.services.oauth.server import AuthorizationServer, OAuthRequest, OAuthResponse
from scopegate.web.oauth import adapter
from scopegate.web.oauth.basic_auth import MalformedBasic, basic_pair
from scopegate.web.runtime import runtime
from scopegate.web.transactions import TransactionalRoute

router = APIRouter(route_class=TransactionalRoute, tags=["oauth"])
FEED_PATH = "/oauth/agent-deny-list"
#: ``since`` is Unix seconds: 0 to 2**40 (13 digits at most).
SINCE_MAX = 2**40
_SINCE = re.compile(r"[0-9]{1,13}")
#: Authlib's endpoint name for the feed (a resource server's credential opens only
#: introspection and this: ``clients.RESOURCE_SERVER_ENDPOINTS``).
ENDPOINT = "agent_deny_list"

FEED_DOC: dict[str, Any] = {
    "parameters": [{
        "name": "since", "in": "query", "required": False,
        "description": "Unix seconds: entries revoked at or after this moment (default 0).",
        "schema": {"type": "integer", "minimum": 0, "maximum": SINCE_MAX, "default": 0},
    }],
    "responses": {
        "200": {"description": "Live deny entries, oldest first.", "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "now": {"type": "integer"}, "bound_seconds": {"type": "number"},
                "entries": {"type": "array", "items": {"type": "object", "properties": {
                    "key": {"type": "string"}, "revoked_at": {"type": "integer"}}}},
                "more": {"type": "boolean"}}}}}},
        "400": {"description": "since is not an integer from 0 to 2^40."},
        "401": {"description": "Not a resource server's credential (invalid_client)."},
    },
}


def _unauthorized(realm: str) -> OAuthResponse:
    return OAuthResponse(401, {"error": "invalid_client"},
                         [("WWW-Authenticate", f'Basic realm="{realm}"')])


def _basic_client_id(headers: Any) -> str | None:
    """The client id of a well-formed HTTP Basic header (UTF-8, ``id:secret``), or
    ``None``: checked here so nothing malformed reaches Authlib's parser."""
    try:
        pair = basic_pair(headers.get("authorization"))
    except MalformedBasic:
        return None
    if pair is None:
        return None
    client_id, secret = pair
    return client_id if client_id and secret else None


def _since(request: Request) -> int | None:
    values = request.query_params.getlist("since")
    if not values:
        return 0
    if len(values) > 1 or not _SINCE.fullmatch(values[0]) or int(values[0]) > SINCE_MAX:
        return None
    return int(values[0])


@router.get(FEED_PATH, openapi_extra=FEED_DOC)
async def agent_deny_list(request: Request) -> Response:
    """The agent deny list's live entries since ``since``, for resource servers that
    verify agent tokens offline (HTTP Basic with a resource server's credential)."""
    rt = runtime(request)
    realm = rt.settings.realm
    client_id = _basic_client_id(request.headers)
    if client_id is None or is_metadata_url(client_id):  # never fetch a document here
        return adapter.to_response(_unauthorized(realm))
    try:
        oauth_request = await adapter.read_request(request)
    except adapter.BadParameters as bad:
        return adapter.invalid_request(bad.description)
    since = _since(request)

    def feed(server: AuthorizationServer) -> OAuthResponse:
        client = _resource_server(server, oauth_request)
        if client is None:
            return _unauthorized(realm)
        if since is None:
            return OAuthResponse(400, {
                "error": "invalid_request",
                "error_description": f"since must be an integer from 0 to {SINCE_MAX}."})
        entries, more = deny_list.entries_since(server.db, since)
        return OAuthResponse(200, {
            "now": int(time.time()),
            "bound_seconds": rt.settings.cache_seconds,
            "entries": [{"key": e.key, "revoked_at": e.revoked_at} for e in entries],
            "more": more,
        })

    return adapter.to_response(await adapter.answer(request, feed, writes=False))


def _resource_server(server: AuthorizationServer,
                     oauth_request: OAuthRequest) -> clients.Client | None:
    try:
        client = server.authenticate_client(oauth_request, ["client_secret_basic"], ENDPOINT)
    except InvalidClientError:
        return None
    if client.registration != clients.RESOURCE_SERVER:
        return None
    return client
