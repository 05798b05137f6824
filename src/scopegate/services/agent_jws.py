"""Reading an agent token's JWS: RFC 7515 compact serialization, EdDSA (RFC 8037) only.

Agent tokens are minted with PyJWT. Verifying them does not go through PyJWT: its decode
costs about 1.4 times the Ed25519 verification itself (a per-character alphabet check
of every segment in Python, the header parsed twice), and a token seen for the first
time is verified on the request path. What is left here is the part no library can do
faster: split, strictly decode (``binascii`` in strict mode: no padding, no character
outside the base64url alphabet), parse (``orjson``), and ``Ed25519PublicKey.verify``
from ``cryptography``. Only our own token shape is accepted: exactly ``alg``, ``kid`` and
``typ`` in the header, so no ``crit`` or other extension can slip through unread.
"""

from __future__ import annotations

import binascii
import functools
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scopegate.core.agent_token import ALGORITHM, TOKEN_TYPE

HEADER_NAMES = frozenset({"alg", "kid", "typ"})
MAX_KID = 64
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


class JWSRefused(Exception):
    """The JWS is malformed, of another kind, or its signature does not verify."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def b64url_decode(segment: str) -> bytes:
    """Strict base64url without padding (RFC 7515 section 2); ``ValueError`` otherwise."""
    raw = segment.encode("ascii")  # UnicodeEncodeError is a ValueError
    if b"=" in raw or b"+" in raw or b"/" in raw:
        raise ValueError("not base64url")
    return binascii.a2b_base64(raw.translate(_TO_STANDARD) + b"=" * (-len(raw) % 4),
                               strict_mode=True)


def _json_object(segment: str) -> dict[str, Any]:
    value = orjson.loads(b64url_decode(segment))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


@functools.lru_cache(maxsize=64)
def _kid_of(encoded_header: str) -> str:
    """The ``kid`` of a header of our shape, or ``JWSRefused``. Every token of one signing
    key has the same header, so the good ones are remembered (a refusal is not)."""
    try:
        header = _json_object(encoded_header)
    except ValueError:
        raise JWSRefused("The agent token is malformed.") from None
    if header.get("alg") != ALGORITHM:
        raise JWSRefused("The agent token is not signed with EdDSA.")
    if header.get("typ") != TOKEN_TYPE:
        raise JWSRefused("The agent token has the wrong type.")
    if not header.keys() <= HEADER_NAMES:
        raise JWSRefused("The agent token is malformed.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID:
        raise JWSRefused("The agent token was signed by an unknown key.")
    return kid


def verify_compact(
    jws: str, public_key_for: Callable[[str], Ed25519PublicKey | None]
) -> dict[str, Any]:
    """The payload of ``jws`` once its header and signature are good; ``JWSRefused``
    otherwise. ``public_key_for(kid)`` is the published key of that id, or ``None``."""
    parts = jws.split(".")
    if len(parts) != 3:
        raise JWSRefused("The agent token is malformed.")
    encoded_header, encoded_payload, encoded_signature = parts
    public = public_key_for(_kid_of(encoded_header))
    if public is None:
        raise JWSRefused("The agent token was signed by an unknown key.")
    try:
        signature = b64url_decode(encoded_signature)
        public.verify(signature, f"{encoded_header}.{encoded_payload}".encode("ascii"))
        return _json_object(encoded_payload)
    except (ValueError, InvalidSignature, UnicodeEncodeError):
        raise JWSRefused("The agent token is invalid.") from None
