"""Org auth token format (Sentry's ``sntrys_``): ``sgo_<base64url(json)>_<secret>``.

The payload tells tools which server and organization the token belongs to without a
round trip; it is not trusted for authorization (the hash lookup is).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from scopegate.core.token_kinds import TokenKind

_MAX_PAYLOAD = 1024


@dataclass(frozen=True)
class OrgTokenPayload:
    org: str
    url: str
    iat: int


def encode(payload: OrgTokenPayload, secret: str) -> str:
    """Join payload and secret; ``secret`` must contain no ``_`` (use hex)."""
    if "_" in secret:
        raise ValueError("org token secret must not contain '_'")
    raw = json.dumps(
        {"iat": payload.iat, "url": payload.url, "org": payload.org}, separators=(",", ":")
    ).encode()
    body = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"{TokenKind.ORG.prefix}{body}_{secret}"


def decode(token: str) -> OrgTokenPayload | None:
    """Read the payload, or ``None`` for anything malformed."""
    if not token.startswith(TokenKind.ORG.prefix):
        return None
    rest = token[len(TokenKind.ORG.prefix):]
    body, sep, secret = rest.rpartition("_")
    if not sep or not body or not secret or len(body) > _MAX_PAYLOAD:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return OrgTokenPayload(org=str(data["org"]), url=str(data["url"]), iat=int(data["iat"]))
    except (ValueError, KeyError, TypeError):
        return None
