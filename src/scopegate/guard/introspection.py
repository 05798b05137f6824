"""RFC 7662 introspection of opaque tokens (``sgu_ sgo_ sgi_ sgp_``) for the remote guard.

An opaque token means nothing offline: only the server knows whether it is live and
what it may do where. So the guard asks ``POST <server>/oauth/introspect`` (form
``token=…``, HTTP Basic as the registered resource server) and keeps the answer a short
while:

* an *active* answer for ``introspection_cache_seconds`` (default 10 s), never past the
  token's own ``exp``: a revoked or downgraded token keeps working here for at most that
  long (the price of not asking on every request; set it lower to tighten the bound);
* an *inactive* answer for ``inactive_cache_seconds`` (default 2 s), so a flood of a bad
  token costs the server one request per token and period, yet a token that was not yet
  committed when first seen works soon after;
* keyed by the token's SHA-256, never the token: a memory dump shows no credential;
* bounded in entries; concurrent misses for one token share one request.

Every failure (unreachable, timeout, an answer other than 200, a body that is not the
answer below, too large) raises ``Unavailable`` (503) and is not cached: the guard never
allows on doubt, and the next request asks again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scopegate.core import scopes as registry
from scopegate.guard.remote_http import RemoteError, fetch_json
from scopegate.services.caches import MISSING, BoundedCache
from scopegate.services.errors import Unavailable
from scopegate.store.models import SLUG_MAX

#: The most organizations one answer may list (the server lists at most 200).
MAX_ORGS = 200
MAX_ANSWER_BYTES = 512 * 1024
CACHE_ENTRIES = 20_000
UNAVAILABLE = "The scopegate server could not be asked about this token; try again."


class OrgScopes(BaseModel):
    """One organization the credential may act in, with its effective scopes there."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")
    id: int = Field(ge=1, lt=2**53)
    slug: str = Field(min_length=1, max_length=SLUG_MAX)
    scopes: list[str] = Field(max_length=4 * len(registry.ALL_SCOPES))

    def known_scopes(self) -> frozenset[str]:
        """The scopes this guard knows: a newer server's unknown ones grant nothing."""
        return frozenset(self.scopes) & registry.ALL_SCOPES


class Introspected(BaseModel):
    """The part of an introspection answer the guard decides on (unknown fields are
    ignored; a known one of the wrong type or size makes the whole answer malformed)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")
    active: bool
    scope: str | None = Field(default=None, max_length=4096)
    exp: int | None = Field(default=None, ge=0, lt=2**53)
    iat: int | None = Field(default=None, ge=0, lt=2**53)
    sub: str | None = Field(default=None, max_length=64)
    iss: str | None = Field(default=None, max_length=512)
    aud: str | list[str] | None = Field(default=None)
    client_id: str | None = Field(default=None, max_length=256)
    credential_kind: Literal["user", "org", "integration", "oauth_access"] | None = None
    credential_ref: str | None = Field(default=None, max_length=128)
    orgs: list[OrgScopes] = Field(default_factory=list, max_length=MAX_ORGS)

    @model_validator(mode="after")
    def _complete(self) -> Introspected:
        if self.active and (self.credential_kind is None or self.credential_ref is None):
            raise ValueError("an active answer names the credential")
        if isinstance(self.aud, list) and (len(self.aud) > 8
                                          or any(len(a) > 512 for a in self.aud)):
            raise ValueError("aud")
        return self

    def audiences(self) -> tuple[str, ...]:
        if self.aud is None:
            return ()
        return (self.aud,) if isinstance(self.aud, str) else tuple(self.aud)

    def org(self, slug: str) -> OrgScopes | None:
        return next((o for o in self.orgs if o.slug == slug), None)


@dataclass(frozen=True)
class _Cached:
    answer: Introspected
    until: float


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Introspector:
    def __init__(self, url: str, issuer: str, authorization: str,
                 http: Callable[[], httpx.AsyncClient], *, timeout: float,
                 active_seconds: float, inactive_seconds: float) -> None:
        self.url = url
        self._issuer = issuer
        self._authorization = authorization
        self._http = http
        self._timeout = timeout
        self._active_seconds = active_seconds
        self._inactive_seconds = inactive_seconds
        self.cache: BoundedCache[str, _Cached] = BoundedCache(CACHE_ENTRIES, "guard_introspection")
        self._in_flight: dict[str, asyncio.Future[Introspected]] = {}

    async def introspect(self, token: str) -> Introspected:
        """The server's answer about ``token``, from the cache when it is young enough;
        ``Unavailable`` when the server cannot give one."""
        digest = token_digest(token)
        cached = self.cache.get(digest)
        if cached is not MISSING and cached.until > time.time():  # type: ignore[union-attr]
            return cached.answer  # type: ignore[union-attr]
        pending = self._in_flight.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._ask(token, digest))
            self._in_flight[digest] = pending
            pending.add_done_callback(lambda done: self._settled(digest, done))
        try:
            return await asyncio.shield(pending)
        except RemoteError:
            raise Unavailable(UNAVAILABLE) from None

    def _settled(self, digest: str, done: asyncio.Future[Introspected]) -> None:
        self._in_flight.pop(digest, None)
        if not done.cancelled():
            done.exception()  # retrieved: a failure every waiter gave up on is no warning

    async def _ask(self, token: str, digest: str) -> Introspected:
        generation = self.cache.generation
        _, document = await fetch_json(
            self._http(), "POST", self.url, limit=MAX_ANSWER_BYTES, timeout=self._timeout,
            headers={"Authorization": self._authorization},
            form={"token": token, "token_type_hint": "access_token"})
        try:
            answer = Introspected.model_validate(document)
        except ValidationError:
            raise RemoteError("malformed introspection answer") from None
        if answer.active and answer.iss is not None and answer.iss != self._issuer:
            raise RemoteError("introspection answer from another issuer")
        now = time.time()
        if answer.active:
            until = now + self._active_seconds
            if answer.exp is not None:
                until = min(until, answer.exp)
        else:
            until = now + self._inactive_seconds
        self.cache.put(digest, _Cached(answer, until), generation)
        return answer
