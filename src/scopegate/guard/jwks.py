"""The remote guard's copy of the server's agent-token keys (``/.well-known/jwks.json``).

Agent tokens are verified offline, so the guard needs the server's public keys before a
token arrives, and a new one soon after the server rotates:

* fetched at start (``RemoteVerifier.running``) and again once the answer's
  ``Cache-Control: max-age`` has passed: the request that notices keeps verifying with
  the keys it has while one refresh runs beside it (a key is only ever dropped when the
  server retires it, after every token it signed has expired);
* fetched again when a token names a ``kid`` the guard does not hold: a rotation on the
  server. At most one such fetch starts per second, whatever tokens arrive (a stream of
  made-up ``kid``s costs the server one request a second); a request that finds one in
  flight or pending waits for it rather than being refused;
* each fetch *replaces* the set: an old key stays exactly as long as the server lists
  it (rotated-out keys are listed until their tokens have expired), so rotation needs
  nothing more here.

Only Ed25519 keys (``kty`` OKP, ``crv`` Ed25519, ``alg`` EdDSA when given, ``use`` sig
when given) are kept; every other key in the set is ignored, so no token can be checked
against an RSA, EC or symmetric key whatever its header says (``agent_jws`` also accepts
``EdDSA`` alone).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scopegate.core.agent_token import ALGORITHM
from scopegate.guard.remote_http import RemoteError, fetch_json
from scopegate.services.agent_jws import MAX_KID, b64url_decode

log = logging.getLogger("scopegate.guard")

#: The largest key set accepted, and the largest answer read.
MAX_KEYS = 64
MAX_JWKS_BYTES = 64 * 1024
#: When the answer names no ``max-age``, and the range one is held to.
DEFAULT_MAX_AGE = 60.0
MIN_MAX_AGE, MAX_MAX_AGE = 1.0, 3600.0
#: At most one fetch for an unknown ``kid`` starts per this many seconds.
UNKNOWN_KID_INTERVAL = 1.0
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age=(\d{1,9})(?:$|[,\s])")


def parse_jwks(document: Any) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 verification keys of a JWK Set by ``kid``; ``RemoteError`` when the
    document is not a JWK Set (an unusable key inside one is skipped, not an error)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise RemoteError("not a JWK Set")
    if len(document["keys"]) > MAX_KEYS:
        raise RemoteError("too many keys")
    found: dict[str, Ed25519PublicKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
            continue
        kid, x = jwk.get("kid"), jwk.get("x")
        if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID or kid in found:
            continue
        try:
            raw = b64url_decode(x) if isinstance(x, str) else b""
            if len(raw) == 32:
                found[kid] = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            continue
    return found


def max_age(cache_control: str | None) -> float:
    """How long an answer with this ``Cache-Control`` is good for, held to a range."""
    match = _MAX_AGE.search(cache_control or "")
    seconds = float(match.group(1)) if match else DEFAULT_MAX_AGE
    return min(max(seconds, MIN_MAX_AGE), MAX_MAX_AGE)


class JwksCache:
    def __init__(self, url: str, http: Callable[[], httpx.AsyncClient], timeout: float) -> None:
        self.url = url
        self._http = http
        self._timeout = timeout
        self.keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at = float("-inf")
        self._max_age = DEFAULT_MAX_AGE
        #: Whether the last fetch worked: when it did not, an unknown ``kid`` is a 503
        #: (the key may exist), not a 401.
        self.reachable = False
        self._fetch: asyncio.Task[None] | None = None
        self._unknown_kid_at = float("-inf")
        #: Called with the ``kid``s a fetch dropped (the verifier forgets their claims).
        self.on_dropped: Callable[[frozenset[str]], None] = lambda _kids: None

    async def _load(self) -> None:
        try:
            response, document = await fetch_json(
                self._http(), "GET", self.url, limit=MAX_JWKS_BYTES, timeout=self._timeout)
            keys = parse_jwks(document)
        except RemoteError as error:
            self.reachable = False
            log.warning("could not fetch the scopegate JWKS: %s", error)
            return
        except Exception:  # a fault here must not surface as an allow, nor kill the loop
            self.reachable = False
            log.exception("could not read the scopegate JWKS")
            return
        dropped = frozenset(self.keys) - frozenset(keys)
        self.keys, self.reachable = keys, True
        self._fetched_at = time.monotonic()
        self._max_age = max_age(response.headers.get("cache-control"))
        if dropped:
            self.on_dropped(dropped)

    def _start(self, delay: float = 0.0) -> asyncio.Task[None]:
        """The fetch in flight, or a new one (after ``delay``): one at a time."""
        if self._fetch is None or self._fetch.done():
            self._fetch = asyncio.get_running_loop().create_task(self._delayed(delay))
        return self._fetch

    async def _delayed(self, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        await self._load()

    async def refresh(self) -> bool:
        """Fetch now (or join the fetch in flight); whether the server answered."""
        await asyncio.shield(self._start())
        return self.reachable

    def stale(self) -> bool:
        return time.monotonic() - self._fetched_at > self._max_age

    def known(self, kid: str) -> Ed25519PublicKey | None:
        """The key ``kid`` if held, from memory; past ``max-age`` a refresh starts beside
        the caller, which goes on with the keys held (a key leaves the set only when the
        server retires it, after every token it signed has expired)."""
        if self.stale():
            self._start()
        return self.keys.get(kid)

    async def fetch_unknown(self, kid: str) -> Ed25519PublicKey | None:
        """The key ``kid`` after one more look at the server (a rotation there): a fetch
        in flight is joined, else one starts, no sooner than ``UNKNOWN_KID_INTERVAL``
        after the last one for an unknown ``kid``. ``None`` when the server does not list
        it; ``RemoteError`` when the server cannot be asked (a new key and a forged one
        look alike then)."""
        found = self.keys.get(kid)
        if found is not None:
            return found
        task = self._fetch
        if task is None or task.done():
            now = time.monotonic()
            wait = max(0.0, self._unknown_kid_at + UNKNOWN_KID_INTERVAL - now)
            self._unknown_kid_at = now + wait
            task = self._start(wait)
        await asyncio.shield(task)
        found = self.keys.get(kid)
        if found is None and not self.reachable:
            raise RemoteError("the JWKS could not be fetched")
        return found

    async def close(self) -> None:
        if self._fetch is not None and not self._fetch.done():
            self._fetch.cancel()
        self._fetch = None
