"""The remote guard's one way of asking the scopegate server: bounded, timed, strict.

Every answer the remote verifier reads (the JWKS, introspection, the deny feed) decides
who gets in, so each read here has a total deadline (not httpx's per-phase timeouts: a
server trickling bytes must not hold a request past it), a size limit read as a stream
(a huge answer is refused before it is held in memory), and a 200 with a JSON body or
nothing. Whatever goes wrong is a ``RemoteError`` naming what, never the secret or the
token that was sent: the callers turn it into a 503 or a stale cache, never an allow.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
import orjson


class RemoteError(Exception):
    """The scopegate server could not be asked, or its answer is not one we accept."""


def basic_authorization(client_id: str, client_secret: str) -> str:
    """HTTP Basic for an OAuth client (RFC 6749 section 2.3.1: both parts form-encoded
    first, which the server's Authlib decodes)."""
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


async def _read(client: httpx.AsyncClient, request: httpx.Request, limit: int
                ) -> tuple[httpx.Response, bytes]:
    response = await client.send(request, stream=True)
    try:
        if response.status_code != 200:
            raise RemoteError(f"answered {response.status_code}")
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RemoteError("answer too large")
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > limit:
                raise RemoteError("answer too large")
        return response, bytes(body)
    finally:
        await response.aclose()


async def fetch_json(client: httpx.AsyncClient, method: str, url: str, *, limit: int,
                     timeout: float, headers: Mapping[str, str] | None = None,
                     params: Mapping[str, str] | None = None,
                     form: Mapping[str, str] | None = None) -> tuple[httpx.Response, Any]:
    """``method url``'s 200 answer and its JSON body, within ``timeout`` seconds in all
    and ``limit`` bytes; ``RemoteError`` otherwise. The body is read raw: the server
    sends JSON uncompressed (no ``Accept-Encoding`` is offered), so ``limit`` bounds
    what is held, not what a decompressor would make of it."""
    request = client.build_request(
        method, url, params=params, data=form,
        headers={"Accept": "application/json", "Accept-Encoding": "identity",
                 **(headers or {})})
    try:
        async with asyncio.timeout(timeout):
            response, body = await _read(client, request, limit)
    except TimeoutError:
        raise RemoteError("timed out") from None
    except httpx.HTTPError as error:
        raise RemoteError(type(error).__name__) from None
    try:
        return response, orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RemoteError("answer is not JSON") from None
