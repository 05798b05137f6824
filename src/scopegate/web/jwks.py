"""``GET /.well-known/jwks.json``: the agent-token public keys (RFC 7517 JWK Set)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from scopegate.web.runtime import runtime

router = APIRouter(tags=["keys"])


@router.get("/.well-known/jwks.json")
def jwks(request: Request) -> JSONResponse:
    """Public keys that verify agent tokens offline; rotated-out keys stay listed until
    every token they signed has expired."""
    keys = runtime(request).keys
    return JSONResponse(keys.jwks(), headers={"Cache-Control": "public, max-age=60"})
