"""The HTTP client the MCP tools call the API with.

Every call carries a bearer token that stands for a person, so what comes back to the
MCP client is generic: a refusal names its status and, for ``insufficient_scope``, the
approval URL the API gave; details (never a token) go to the server log. Answers are
bounded in size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

log = logging.getLogger("scopegate.mcp")

MAX_ANSWER_BYTES = 1024 * 1024
TIMEOUT_SECONDS = 10.0


class ToolFailure(Exception):
    """A tool call that cannot complete; the message is safe to show the client.
    ``status``: the API's HTTP status, when it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApprovalNeeded(Exception):
    """The API refused with ``insufficient_scope`` and said where the person approves."""

    def __init__(self, url: str, scopes: tuple[str, ...]) -> None:
        super().__init__("approval needed")
        self.url = url
        self.scopes = scopes


class ApiClient:
    """Calls ``<api>/<path>`` with a bearer token; JSON in and out. ``http`` hands out
    the (shared, pooled) HTTP client."""

    def __init__(self, http: Callable[[], httpx.AsyncClient]) -> None:
        self._http = http

    async def call(self, api: str, token: str, method: str, path: str, *,
                   params: dict[str, Any] | None = None,
                   body: dict[str, Any] | None = None) -> Any:
        url = api + path
        try:
            async with self._http().stream(
                method, url, params=params,
                content=orjson.dumps(body) if body is not None else None,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                         **({"Content-Type": "application/json"} if body is not None else {})},
                timeout=TIMEOUT_SECONDS,
            ) as answer:
                raw = await _read_bounded(answer)
        except httpx.HTTPError as exc:
            log.warning("MCP tool call to %s %s failed: %s", method,
                        urlsplit(url).path, type(exc).__name__)
            raise ToolFailure("The API could not be reached. Try again later.") from None
        data = _json(raw)
        if answer.status_code < 400:
            return data
        return _refusal(answer.status_code, data, method, url)


async def _read_bounded(answer: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in answer.aiter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise ToolFailure("The API's answer was too large.")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _refusal(status: int, data: Any, method: str, url: str) -> Any:
    body = data if isinstance(data, dict) else {}
    log.info("MCP tool call %s %s answered %d", method, urlsplit(url).path, status)
    if status == 403 and body.get("error") == "insufficient_scope":
        approval = body.get("approval")
        if isinstance(approval, dict) and isinstance(approval.get("url"), str):
            scopes = approval.get("scopes")
            raise ApprovalNeeded(approval["url"], tuple(
                str(s) for s in scopes if isinstance(s, str)) if isinstance(scopes, list)
                else ())
        raise ToolFailure("The API refused: this authorization lacks a scope the call needs.",
                          status)
    if status == 401:
        raise ToolFailure("The API refused the credential. Sign in again.", status)
    if status == 404:
        raise ToolFailure("Not found (or not visible to you).", status)
    if status in (400, 409, 413, 422):
        raise ToolFailure(f"The API refused the request as invalid ({status}).", status)
    if status == 429:
        raise ToolFailure("The API is rate limiting this caller. Try again later.", status)
    raise ToolFailure(f"The API answered {status}.", status)
