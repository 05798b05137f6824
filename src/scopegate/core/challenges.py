"""RFC 6750 section 3: the ``WWW-Authenticate: Bearer`` challenges.

A missing, unknown, revoked or expired credential::

    HTTP/1.1 401 Unauthorized
    WWW-Authenticate: Bearer realm="scopegate", error="invalid_token",
                      error_description="The access token expired"
    {"detail": "The access token expired"}

A valid credential lacking scope::

    HTTP/1.1 403 Forbidden
    WWW-Authenticate: Bearer realm="scopegate", error="insufficient_scope",
                      scope="event:write event:admin"
    {"detail": "...", "error": "insufficient_scope", "scope": "event:write event:admin"}

Descriptions are fixed strings chosen by the caller of these functions: a secret or
any piece of the presented credential never reaches them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scopegate.core.scopes import format_scopes

INVALID_TOKEN = "invalid_token"  # noqa: S105 - an RFC 6750 error code
INSUFFICIENT_SCOPE = "insufficient_scope"


@dataclass(frozen=True)
class Challenge:
    status: int
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


def _quote(value: str) -> str:
    # RFC 6750 forbids '"' and '\' in these values; drop them rather than escape.
    return '"' + "".join(ch for ch in value if ch not in '"\\' and 0x20 <= ord(ch) < 0x7F) + '"'


def _header(realm: str, **params: str) -> str:
    parts = [f"realm={_quote(realm)}"]
    parts += [f"{key}={_quote(value)}" for key, value in params.items()]
    return "Bearer " + ", ".join(parts)


def invalid_token(description: str, realm: str = "scopegate") -> Challenge:
    """401 for a missing, malformed, unknown, revoked or expired credential."""
    return Challenge(
        status=401,
        headers={
            "WWW-Authenticate": _header(
                realm, error=INVALID_TOKEN, error_description=description
            )
        },
        body={"detail": description, "error": INVALID_TOKEN},
    )


def insufficient_scope(
    sufficient: Iterable[str],
    realm: str = "scopegate",
    description: str = "The credential lacks a scope this request needs.",
) -> Challenge:
    """403 for a valid credential that holds none of the scopes that would suffice."""
    scope = format_scopes(sufficient)
    return Challenge(
        status=403,
        headers={
            "WWW-Authenticate": _header(
                realm, error=INSUFFICIENT_SCOPE, error_description=description, scope=scope
            )
        },
        body={"detail": description, "error": INSUFFICIENT_SCOPE, "scope": scope},
    )


def for_protected_resource(challenge: Challenge, resource_metadata: str,
                           scopes: Iterable[str]) -> Challenge:
    """``challenge`` as a resource with RFC 9728 metadata answers it (the MCP endpoint):
    the header also names the metadata document and every scope the resource needs, so
    a client can discover the authorization server and ask for them in one go."""
    header = challenge.headers["WWW-Authenticate"]
    params = {"resource_metadata": resource_metadata}
    if "scope=" not in header:
        params["scope"] = format_scopes(scopes)
    extra = ", ".join(f"{key}={_quote(value)}" for key, value in params.items())
    return Challenge(challenge.status, {"WWW-Authenticate": f"{header}, {extra}"},
                     challenge.body)


def no_credentials(realm: str = "scopegate") -> Challenge:
    """401 for a request that presented no credential at all: RFC 6750 section 3.1 sends
    no error code then."""
    return Challenge(
        status=401,
        headers={"WWW-Authenticate": _header(realm)},
        body={"detail": "Authentication credentials were not provided."},
    )
