"""Upstream tokens at rest, in proxy mode: what a copy of the database cannot open.

Each grant has its own random 256-bit key. The upstream access and refresh tokens are
sealed under it (AES-256-GCM, bound to the grant by associated data), and the key itself
is stored only *wrapped*, once per front-door credential (the authorization code, then
each access and refresh token): wrapped under a key derived (HKDF-SHA256) from that
credential's secret. The database keeps only SHA-256 hashes of those secrets, which do
not yield the wrapping keys. So opening the upstream tokens takes a live front-door
token, as in Cloudflare's workers-oauth-provider; a stolen database alone opens nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_WRAP_INFO = b"scopegate upstream grant-key wrap v1"
_NONCE = 12


@dataclass(frozen=True)
class UpstreamTokens:
    access_token: str
    refresh_token: str | None
    #: Unix seconds when the upstream access token expires.
    expires_at: int
    scope: str = ""


class VaultError(Exception):
    """A wrapped key or sealed blob that does not open with what was presented."""


def new_grant_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _wrapping_key(secret: str) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=_WRAP_INFO).derive(secret.encode()))


def wrap(grant_key: bytes, secret: str) -> bytes:
    """``grant_key`` wrapped under a key only ``secret`` (a front-door credential) gives."""
    nonce = os.urandom(_NONCE)
    return nonce + _wrapping_key(secret).encrypt(nonce, grant_key, b"grant-key")


def unwrap(wrapped: bytes, secret: str) -> bytes:
    try:
        return _wrapping_key(secret).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], b"grant-key")
    except (InvalidTag, ValueError):
        raise VaultError("the grant key does not open with this credential") from None


def seal(grant_key: bytes, tokens: UpstreamTokens) -> bytes:
    nonce = os.urandom(_NONCE)
    body = orjson.dumps({"a": tokens.access_token, "r": tokens.refresh_token,
                         "e": tokens.expires_at, "s": tokens.scope})
    return nonce + AESGCM(grant_key).encrypt(nonce, body, b"upstream-tokens")


def open_sealed(grant_key: bytes, sealed: bytes) -> UpstreamTokens:
    try:
        body = AESGCM(grant_key).decrypt(sealed[:_NONCE], sealed[_NONCE:], b"upstream-tokens")
    except (InvalidTag, ValueError):
        raise VaultError("the upstream tokens do not open with this key") from None
    data = orjson.loads(body)
    return UpstreamTokens(data["a"], data["r"], int(data["e"]), data.get("s", ""))
