"""Agent capability tokens: minting and approving over HTTP, and hand-signed tokens.

Helpers for ``tests/test_agent_*.py`` and ``test_grant_race.py``.
"""

from __future__ import annotations

import base64
import json
import secrets
import time

import jwt
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from scopegate.web.cookies import CSRF_HEADER

AGENT_MINT_PATH = "/api/0/organizations/{org}/agent/token/"
AGENT_APPROVE_PATH = "/api/0/organizations/{org}/agent/approve/"


def mint_agent(
    client: TestClient, headers: dict[str, str], org: str = "acme", **body: object
) -> Response:
    """``POST`` the mint endpoint; ``body`` is the JSON (``sessionId`` defaults to "s1")."""
    body.setdefault("sessionId", "s1")
    return client.post(AGENT_MINT_PATH.format(org=org), json=body, headers=headers)


def agent_token_for(
    client: TestClient, headers: dict[str, str], org: str = "acme", **body: object
) -> str:
    """Mint and return just the token, failing on anything but 201."""
    response = mint_agent(client, headers, org, **body)
    assert response.status_code == 201, response.text
    return response.json()["token"]


def approve_via_api(
    client: TestClient, csrf: str, scopes: list[str], org: str = "acme",
    session: str = "s1", **body: object,
) -> Response:
    """Approve from the logged-in browser session of ``client`` (``X-CSRF-Token``)."""
    return client.post(
        AGENT_APPROVE_PATH.format(org=org),
        json={"sessionId": session, "scopes": scopes, **body},
        headers={CSRF_HEADER: csrf},
    )


def agent_claims(app: FastAPI, user_id: int, org_id: int, **overrides: object) -> dict:
    """Claims of a valid agent token for ``app`` (override or drop with ``None``)."""
    settings = app.state.runtime.settings
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": settings.issuer,
        "aud": f"{settings.base_url}/api/0/",
        "sub": str(user_id),
        "org": org_id,
        "sid": "s1",
        "scopes": ["event:read", "org:read"],
        "act": {"sub": "test-agent"},
        "par": "user_token:0",
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(16),
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_agent_token(
    app: FastAPI, claims: dict, *, headers: dict[str, object] | None = None,
    key: object = None, algorithm: str = "EdDSA",
) -> str:
    """``sga_`` + a JWS of ``claims`` signed with the app's active key (or ``key``).

    EdDSA tokens are assembled by hand (RFC 7515 compact form, Ed25519 over
    ``header.payload``), so any header or claim value can be signed, however wrong;
    other algorithms go through PyJWT. A header value of ``None`` drops that parameter.
    """
    active = app.state.runtime.keys.active()
    header: dict[str, object] = {"alg": algorithm, "kid": active.kid, "typ": "sg-agent+jwt"}
    header.update(headers or {})
    header = {name: value for name, value in header.items() if value is not None}
    signer = active.key if key is None else key
    if algorithm != "EdDSA":
        return "sga_" + jwt.encode(claims, signer, algorithm=algorithm, headers=header)
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = signer.sign(signing_input.encode())  # type: ignore[attr-defined]
    return f"sga_{signing_input}.{_b64url(signature)}"
