"""HTTP Basic client credentials, read once for every OAuth endpoint that looks at them.

RFC 6749 §2.3.1 sends a client's id and secret as HTTP Basic (RFC 7617), each part
form-urlencoded first. Authlib parses the header itself, but lets a value that is not
base64 of UTF-8 escape as an exception (a 500); and a few places read the client id
before Authlib runs (the rate limit of the token endpoint, the deny-list feed). They all
go through ``basic_pair``.
"""

from __future__ import annotations

import base64
import binascii

#: Longest base64 part read (an id and a secret are far shorter).
MAX_CREDENTIALS_CHARS = 4096


class MalformedBasic(ValueError):
    """The header says ``Basic`` but is not bounded base64 of UTF-8."""


def basic_pair(authorization: str | None) -> tuple[str, str] | None:
    """``(user, password)`` of a ``Basic`` Authorization header, as sent (still
    form-urlencoded: the caller unquotes); ``None`` when there is no header or another
    scheme; ``MalformedBasic`` when it cannot be decoded."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    credentials = credentials.strip()
    if len(credentials) > MAX_CREDENTIALS_CHARS:
        raise MalformedBasic("the HTTP Basic credentials are too long")
    try:
        decoded = base64.b64decode(credentials).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise MalformedBasic("the HTTP Basic credentials are malformed") from None
    user, _, password = decoded.partition(":")
    return user, password
