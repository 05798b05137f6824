"""The two reference apps ``bench/throughput.py`` measures scopegate against.

Both serve ``GET /items``: 25 small JSON objects shaped like scopegate's issue objects
(id, title, status, project, assignedTo, dateCreated, lastSeen), built per request from
in-memory rows as a route does, no database. ``plain_app()`` answers anyone;
``jwt_app()`` first does the naive check a hand-written API would: PyJWT HS256 decode
with a fixed secret (signature, ``exp``) and a scope claim that must hold ``event:read``.
They are the floor and the "what a minimal check costs" line for the issue's targets.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ITEMS_PATH = "/items"
ITEM_COUNT = 25
JWT_SECRET = "bench-hs256-secret-not-for-production-0123456789"  # bench only
JWT_SCOPE = "event:read"
_STATUSES = ("unresolved", "resolved", "ignored")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_ROWS = [
    (
        n,
        f"Bench issue {n}: TypeError in checkout step {n % 7}",
        _STATUSES[n % 3],
        ("web", "api")[n % 2],
        f"member{n % 4}@acme.test" if n % 2 else None,
        _EPOCH + timedelta(minutes=n),
        _EPOCH + timedelta(hours=n),
    )
    for n in range(ITEM_COUNT, 0, -1)
]


def _items() -> list[dict[str, object]]:
    return [
        {
            "id": str(n), "title": title, "status": status, "project": project,
            "assignedTo": assignee, "dateCreated": created.isoformat(),
            "lastSeen": seen.isoformat(),
        }
        for n, title, status, project, assignee, created, seen in _ROWS
    ]


async def _list_items(_request: Request) -> JSONResponse:
    return JSONResponse(_items())


def _challenge(status: int, error: str) -> JSONResponse:
    return JSONResponse({"detail": error}, status_code=status,
                        headers={"WWW-Authenticate": f'Bearer error="{error}"'})


async def _list_items_with_jwt(request: Request) -> JSONResponse:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _challenge(401, "invalid_request")
    try:
        claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"],
                            options={"require": ["exp", "sub"]})
    except jwt.InvalidTokenError:
        return _challenge(401, "invalid_token")
    if JWT_SCOPE not in str(claims.get("scope", "")).split():
        return _challenge(403, "insufficient_scope")
    return JSONResponse(_items())


def plain_app() -> Starlette:
    """``GET /items`` with no authentication at all."""
    return Starlette(routes=[Route(ITEMS_PATH, _list_items)])


def jwt_app() -> Starlette:
    """``GET /items`` behind a hand-written PyJWT HS256 bearer check."""
    return Starlette(routes=[Route(ITEMS_PATH, _list_items_with_jwt)])


def jwt_token(lifetime_seconds: int = 3600) -> str:
    """A token ``jwt_app`` accepts: HS256, ``sub``, ``exp``, ``scope`` with event:read."""
    now = int(time.time())
    claims = {"sub": "1", "scope": "org:read event:read", "iat": now,
              "exp": now + lifetime_seconds}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")
