"""How the authorization endpoint refuses, in direct and proxy mode alike.

A request without a verified redirect URI (a bad ``client_id`` or ``redirect_uri``) gets
an error page and is never redirected (RFC 9700 §4.11); any other error goes back to the
client's redirect URI with ``state`` and ``iss`` (RFC 9207). Messages name the rule,
never the request's text.
"""

from __future__ import annotations

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import OAuth2Error
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from scopegate.web.runtime import runtime
from scopegate.web.ui.rendering import render
from scopegate.web.ui.session import WebUser

#: Errors whose Authlib description quotes a request value: sent without one.
_QUOTING = frozenset({"unsupported_response_type"})


def problem(request: Request, me: WebUser | None, message: str, status: int = 400,
            title: str = "Invalid authorization request") -> Response:
    return render(request, "error.html", status, me=me, title=title, message=message)


def redirect_error(request: Request, error: OAuth2Error) -> Response:
    params = [("error", error.error)]
    if error.description and error.error not in _QUOTING:
        params.append(("error_description", error.get_error_description()))
    if error.state:
        params.append(("state", error.state))
    params.append(("iss", runtime(request).settings.issuer))
    return RedirectResponse(add_params_to_uri(error.redirect_uri, params), status_code=303)


def refused(request: Request, me: WebUser | None, error: OAuth2Error) -> Response:
    if error.redirect_uri:
        return redirect_error(request, error)
    # No verified redirect URI: never redirect; the page names the rule only.
    messages = {
        "invalid_client": "The app (client_id) is not registered here.",
    }
    return problem(request, me, messages.get(
        error.error, "The redirect_uri is missing or not registered for this app, or the "
        "request is malformed."))
