"""Reading an agent token's JWS (``services/agent_jws.py``): strict, and our shape only.

PyJWT mints the tokens; these tests check that the verifier refuses what a lenient
decoder would let through, and accepts exactly what PyJWT signs.
"""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scopegate.services.agent_jws import JWSRefused, b64url_decode, verify_compact

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
CLAIMS = {"sub": "1", "scopes": ["event:read"]}
HEADERS = {"kid": "k1", "typ": "sg-agent+jwt"}


def keys(kid: str):
    return KEY.public_key() if kid == "k1" else None


def signed(headers: dict | None = None, claims: dict | None = None, key=KEY) -> str:
    return jwt.encode(claims or CLAIMS, key, algorithm="EdDSA", headers=headers or HEADERS)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def refused(token: str) -> str:
    with pytest.raises(JWSRefused) as caught:
        verify_compact(token, keys)
    return caught.value.description


def test_a_token_pyjwt_signed_verifies_to_its_claims() -> None:
    assert verify_compact(signed(), keys) == CLAIMS


def test_a_signature_by_another_key_is_refused() -> None:
    assert "invalid" in refused(signed(key=OTHER))


def test_a_changed_payload_is_refused() -> None:
    head, _, signature = signed().split(".")
    forged = b64({"sub": "2", "scopes": ["event:admin"]})
    assert "invalid" in refused(f"{head}.{forged}.{signature}")


@pytest.mark.parametrize("where", [0, 1, 2])
def test_padding_in_any_segment_is_refused(where: int) -> None:
    parts = signed().split(".")
    parts[where] += "=="
    assert refused(".".join(parts))


@pytest.mark.parametrize("intruder", ["!", "+", "/", " ", "\u00e9"])
def test_a_character_outside_base64url_is_refused_not_skipped(intruder: str) -> None:
    # A lenient decoder drops the stray character and verifies the token anyway.
    head, payload, signature = signed().split(".")
    middle = len(signature) // 2
    stray = signature[:middle] + intruder + signature[middle:]
    assert refused(f"{head}.{payload}.{stray}")
    assert base64.urlsafe_b64decode(signature + "==") == base64.urlsafe_b64decode(
        stray.replace(intruder, "") + "==")


@pytest.mark.parametrize("extra", [{"crit": ["exp"]}, {"jku": "https://evil.example/k"},
                                   {"x5u": "https://evil.example/c"}])
def test_a_header_parameter_we_do_not_read_is_refused(extra: dict) -> None:
    assert "malformed" in refused(signed(headers={**HEADERS, **extra}))


@pytest.mark.parametrize(
    ("header", "expected"),
    [({"alg": "none", "typ": "sg-agent+jwt", "kid": "k1"}, "EdDSA"),
     ({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}, "type"),
     ({"alg": "EdDSA", "typ": "sg-agent+jwt"}, "unknown key"),
     ({"alg": "EdDSA", "typ": "sg-agent+jwt", "kid": "k2"}, "unknown key")],
    ids=["alg-none", "typ", "no-kid", "unknown-kid"],
)
def test_the_header_must_be_ours(header: dict, expected: str) -> None:
    _, payload, signature = signed().split(".")
    assert expected in refused(f"{b64(header)}.{payload}.{signature}")


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "..", "e30.e30.", "W10.e30.AAAA"],
                         ids=["empty", "two", "four", "dots", "no-signature", "header-list"])
def test_malformed_shapes_are_refused(token: str) -> None:
    assert refused(token)


def test_b64url_decode_is_strict() -> None:
    assert b64url_decode("AQID") == b"\x01\x02\x03"
    assert b64url_decode("-_8") == b"\xfb\xff"
    for bad in ("AQID=", "AQ+D", "AQ/D", "A", "AQ\nID"):
        with pytest.raises(ValueError):
            b64url_decode(bad)
