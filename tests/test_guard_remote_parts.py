"""The remote guard's parts on their own, offline: the JWK Set reader, the deny feed's
paging and rule, and the introspection client's cache and failures.

The server's HTTP answers are played by ``httpx.MockTransport`` (what a misbehaving or
hostile server could send); the keys are real Ed25519 keys. The whole guard against a
live server is ``test_guard_remote.py``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scopegate.core.deny_keys import parent_key, session_key
from scopegate.guard.deny_feed import SINCE_OVERLAP, DenyFeed
from scopegate.guard.introspection import Introspector, token_digest
from scopegate.guard.jwks import JwksCache, max_age, parse_jwks
from scopegate.guard.remote import RemoteSettings
from scopegate.guard.remote_http import RemoteError, basic_authorization
from scopegate.services.errors import Unavailable

Handler = Callable[[httpx.Request], httpx.Response]


def _x(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def answer(status: int, json: Any = None, *, text: str | None = None,
           content: bytes | None = None) -> httpx.Response:
    """An answer streamed as a real server's is (``httpx.Response(json=…)`` comes
    already read, which no transport ever hands a client)."""
    body = content if content is not None else (
        text.encode() if text is not None else orjson.dumps(json) if json is not None else b"")
    return httpx.Response(status, stream=httpx.ByteStream(body))


def _client(handler: Handler) -> Callable[[], httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return lambda: client


# -- the JWK Set -------------------------------------------------------------------------
def test_only_ed25519_signature_keys_are_kept() -> None:
    good, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = parse_jwks({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": _x(good), "kid": "good", "alg": "EdDSA",
         "use": "sig"},
        {"kty": "OKP", "crv": "Ed25519", "x": _x(other), "kid": "bare"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "ec"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "OKP", "crv": "X25519", "x": _x(other), "kid": "x25519"},
        {"kty": "OKP", "crv": "Ed25519", "x": _x(other), "kid": "rs", "alg": "RS256"},
        {"kty": "OKP", "crv": "Ed25519", "x": _x(other), "kid": "enc", "use": "enc"},
        {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "short"},
        {"kty": "OKP", "crv": "Ed25519", "x": _x(other) + "=", "kid": "padded"},
        {"kty": "OKP", "crv": "Ed25519", "x": _x(other), "kid": "good"},  # a duplicate
        {"kty": "OKP", "crv": "Ed25519", "x": _x(other), "kid": "k" * 65},
        "not a key",
    ]})
    assert set(keys) == {"good", "bare"}
    signature = good.sign(b"payload")
    keys["good"].verify(signature, b"payload")  # the first "good" was kept
    for document in ({"keys": "no"}, [], None, {"keys": [{}] * 65}):
        with pytest.raises(RemoteError):
            parse_jwks(document)


def test_max_age_is_read_and_held_to_a_range() -> None:
    assert max_age("public, max-age=60") == 60
    assert max_age("max-age=0") == 1
    assert max_age("max-age=999999999") == 3600
    assert max_age(None) == max_age("no-store") == 60
    assert max_age("s-maxage=5, max-age=7") == 7


def test_an_unknown_kid_is_fetched_at_most_once_a_second() -> None:
    calls: list[float] = []
    key = Ed25519PrivateKey.generate()

    def handler(_request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        return answer(200, json={"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": _x(key), "kid": "k1"}]})

    async def scenario() -> None:
        cache = JwksCache("http://sg/jwks", _client(handler), timeout=1)
        assert await cache.refresh()
        assert cache.known("k1") is not None
        found = await asyncio.gather(*(cache.fetch_unknown(f"nope{i}") for i in range(20)))
        assert found == [None] * 20
        assert await cache.fetch_unknown("nope-again") is None

    asyncio.run(scenario())
    assert len(calls) == 3  # start, then one per second whatever the number of kids
    assert calls[2] - calls[1] >= 0.99


def test_an_unknown_kid_while_the_server_is_down_is_unavailable() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async def scenario() -> None:
        cache = JwksCache("http://sg/jwks", _client(handler), timeout=1)
        assert not await cache.refresh()
        with pytest.raises(RemoteError):
            await cache.fetch_unknown("k1")

    asyncio.run(scenario())


# -- the deny feed -----------------------------------------------------------------------
def test_the_deny_rule_is_the_in_process_one() -> None:
    feed = DenyFeed("http://sg/feed", "Basic x", _client(lambda r: answer(500)),
                    timeout=1, bound=2)
    feed.entries = {session_key(1, 2, "s1"): 1000, parent_key("user_token:9:abc"): 1000}
    assert feed.is_denied(1, 2, "s1", 1000, "user_token:1:x")
    assert not feed.is_denied(1, 2, "s1", 1001, "user_token:1:x")  # minted after
    assert not feed.is_denied(1, 3, "s1", 900, "user_token:1:x")  # another person
    assert feed.is_denied(1, 2, "s2", 5000, "user_token:9:abc")  # its parent ended


def _page(now: int, entries: list[tuple[str, int]], more: bool = False) -> dict[str, Any]:
    return {"now": now, "bound_seconds": 1.5, "more": more,
            "entries": [{"key": k, "revoked_at": at} for k, at in entries]}


def test_the_feed_syncs_fully_then_incrementally_following_more() -> None:
    now = int(time.time())
    a, b, c = (session_key(1, 1, s) for s in ("a", "b", "c"))
    pages = {0: _page(now, [(a, now - 50), (b, now - 40)], more=True),
             now - 40: _page(now, [(b, now - 40), (c, now - 30)]),
             now + 1 - SINCE_OVERLAP: _page(now + 1, [("unrelated:key", now)])}
    asked: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == basic_authorization("id", "s e/cret")
        since = int(request.url.params["since"])
        asked.append(since)
        return answer(200, json=pages.get(since, _page(now + 1, [])))

    async def scenario() -> DenyFeed:
        feed = DenyFeed("http://sg/feed", basic_authorization("id", "s e/cret"),
                        _client(handler), timeout=1)
        assert not feed.fresh() and feed.bound is None
        await feed.poll()
        assert feed.fresh() and feed.bound == 1.5
        pages[now - SINCE_OVERLAP] = _page(now + 1, [])
        await feed.poll()
        return feed

    feed = asyncio.run(scenario())
    assert asked == [0, now - 40, now - SINCE_OVERLAP]
    assert feed.entries == {a: now - 50, b: now - 40, c: now - 30}


@pytest.mark.parametrize("reply", [
    answer(500),
    answer(401, json={"error": "invalid_client"}),
    answer(200, text="not json"),
    answer(200, json={"now": 1, "entries": [], "more": False}),
    answer(200, json={"now": 1, "bound_seconds": "2", "entries": [], "more": False}),
    answer(200, json=_page(1, [("agent-deny:x", 5)], more=True)),  # never advances
])
def test_a_failed_poll_leaves_the_copy_stale(reply: httpx.Response) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["since"] == "5":
            return answer(200, json=_page(1, [("agent-deny:x", 5)], more=True))
        return reply

    async def scenario() -> None:
        feed = DenyFeed("http://sg/feed", "Basic x", _client(handler), timeout=1, bound=2)
        assert not await feed.attempt()
        assert not feed.fresh()

    asyncio.run(scenario())


# -- introspection -----------------------------------------------------------------------
ACTIVE = {"active": True, "scope": "event:read", "sub": "12", "iss": "http://sg",
          "credential_kind": "user", "credential_ref": "user_token:12",
          "orgs": [{"id": 1, "slug": "acme", "scopes": ["event:read", "new:scope"]}]}


def _introspector(handler: Handler, **kw: float) -> Introspector:
    options = {"timeout": 1.0, "active_seconds": 10.0, "inactive_seconds": 2.0, **kw}
    return Introspector("http://sg/oauth/introspect", "http://sg", "Basic x",
                        _client(handler), **options)


def test_concurrent_misses_share_one_request_and_the_cache_holds_no_token() -> None:
    calls: list[bytes] = []

    async def scenario() -> None:
        async def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request.content)
            await asyncio.sleep(0.05)
            return answer(200, json={**ACTIVE, "exp": int(time.time()) + 600})

        introspector = Introspector("http://sg/oauth/introspect", "http://sg", "Basic x",
                                    _client(handler),  # type: ignore[arg-type]
                                    timeout=1, active_seconds=10, inactive_seconds=2)
        answers = await asyncio.gather(*(introspector.introspect("sgu_secret")
                                         for _ in range(10)))
        assert {a.org("acme").known_scopes() for a in answers} == {  # type: ignore[union-attr]
            frozenset({"event:read"})}
        await introspector.introspect("sgu_secret")
        assert list(introspector.cache._entries) == [token_digest("sgu_secret")]

    asyncio.run(scenario())
    assert calls == [b"token=sgu_secret&token_type_hint=access_token"]


def test_answers_are_cached_never_past_exp_and_inactive_ones_briefly() -> None:
    calls: list[str] = []
    exp = int(time.time()) - 1

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.content.decode().split("&")[0].removeprefix("token=")
        calls.append(token)
        if token == "sgu_expiring":
            return answer(200, json={**ACTIVE, "exp": exp})
        return answer(200, json={"active": False})

    async def scenario() -> None:
        introspector = _introspector(handler, inactive_seconds=60)
        for _ in range(2):
            assert (await introspector.introspect("sgu_expiring")).exp == exp
            assert not (await introspector.introspect("sgu_unknown")).active

    asyncio.run(scenario())
    assert calls == ["sgu_expiring", "sgu_unknown", "sgu_expiring"]


@pytest.mark.parametrize("reply", [
    answer(503),
    answer(200, text="<html>"),
    answer(200, json=[]),
    answer(200, json={"active": "true"}),
    answer(200, json={"active": True, "scope": "event:read"}),  # whose?
    answer(200, json={**ACTIVE, "iss": "http://elsewhere"}),
    answer(200, json={**ACTIVE, "orgs": [{"id": "1", "slug": "a", "scopes": []}]}),
    answer(200, json={**ACTIVE, "orgs": [{"id": 1, "slug": "a", "scopes": []}] * 201}),
    answer(200, content=b'{"active": false, "pad": "' + b"x" * 600_000 + b'"}'),
])
def test_anything_but_a_well_formed_answer_is_unavailable(reply: httpx.Response) -> None:
    async def scenario() -> None:
        introspector = _introspector(lambda _request: reply)
        with pytest.raises(Unavailable):
            await introspector.introspect("sgu_token")
        assert len(introspector.cache) == 0

    asyncio.run(scenario())


def test_a_slow_server_is_unavailable_within_the_timeout() -> None:
    async def scenario() -> float:
        async def handler(_request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(5)
            return answer(200, json={"active": False})

        introspector = Introspector("http://sg/oauth/introspect", "http://sg", "Basic x",
                                    _client(handler),  # type: ignore[arg-type]
                                    timeout=0.2, active_seconds=10, inactive_seconds=2)
        start = time.monotonic()
        with pytest.raises(Unavailable):
            await introspector.introspect("sgu_token")
        return time.monotonic() - start

    assert asyncio.run(scenario()) < 1


def test_settings_are_checked_and_the_secret_is_not_shown() -> None:
    settings = RemoteSettings(server_url="https://sg.example/", audience="https://a/",
                              client_id="id", client_secret="hunter2")
    assert settings.server_url == "https://sg.example"
    assert "hunter2" not in repr(settings)
    for bad in ({"server_url": "sg.example"}, {"timeout_seconds": 0},
                {"deny_bound_seconds": 0}, {"client_secret": ""}):
        with pytest.raises(ValueError):
            RemoteSettings(**{"server_url": "https://sg", "audience": "https://a/",  # type: ignore[arg-type]
                              "client_id": "id", "client_secret": "s", **bad})
