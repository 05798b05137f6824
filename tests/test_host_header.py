"""Absolute URLs come from the configured base URL, and other ``Host`` values are refused.

Regression: the issues list built its ``Link: rel="next"`` from the request URL, so a
request with ``Host: evil.test`` got a next-page link to evil.test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import spec
from scopegate.web.app import create_app
from scopegate.web.origin import host_patterns
from support.http import bearer
from support.settings import BASE_URL, make_settings
from support.world import World, user_token

ISSUES = "/api/0/organizations/acme/issues/"
#: Three issues match and a page holds one, so there is always a next page. ``note``
#: is not a parameter of the endpoint: the link keeps it anyway, encoded.
QUERY = {"status": "unresolved", "perPage": "1", "query": "Issue ", "note": "a&b <c>",
         "page": "1"}


def next_link(response: httpx.Response) -> str:
    match = re.fullmatch(r'<([^<>]+)>; rel="next"', response.headers.get("link", ""))
    assert match, f"no next link: {response.headers.get('link')!r}"
    return match.group(1)


def assert_on_base_url(link: str, page: int) -> None:
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == BASE_URL
    assert parts.path == ISSUES
    assert parse_qs(parts.query, keep_blank_values=True) == {
        **{name: [value] for name, value in QUERY.items()}, "page": [str(page)]
    }


@pytest.fixture
def token(db: Session, world: World) -> dict[str, str]:
    return bearer(user_token(db, World.email("member"), spec.ROLE_SCOPES["member"]))


@pytest.fixture
def alias_app(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    """The app on the same database, answering for ``alias.test`` as well."""
    monkeypatch.setenv("SCOPEGATE_ALLOWED_HOSTS", "alias.test, *.alias.test")
    app = create_app(make_settings(database_url))
    yield app
    app.state.runtime.engine.dispose()


def test_host_header_injection_cannot_redirect_pagination_links(
    client: TestClient, token: dict[str, str]
) -> None:
    # Positive control: the same request on the base URL's host gets its next link.
    honest = client.get(ISSUES, params=QUERY, headers=token)
    assert honest.status_code == 200, honest.text
    assert len(honest.json()) == 1
    assert_on_base_url(next_link(honest), page=2)
    second = client.get(next_link(honest), headers=token)
    assert second.status_code == 200
    assert second.json()[0]["id"] != honest.json()[0]["id"]
    assert_on_base_url(next_link(second), page=3)

    for host in ("evil.test", "evil.test:80", "testserver.evil.test", "www.testserver"):
        forged = client.get(ISSUES, params=QUERY, headers={**token, "Host": host})
        assert forged.status_code == 400, (host, forged.text)
        assert "link" not in forged.headers
        assert "evil" not in forged.text
        assert forged.headers["x-content-type-options"] == "nosniff"


def test_an_allowed_alias_still_links_to_the_base_url(
    alias_app: FastAPI, token: dict[str, str]
) -> None:
    for alias in ("http://alias.test", "http://eu.alias.test:8080"):
        with TestClient(alias_app, base_url=alias) as via_alias:
            response = via_alias.get(ISSUES, params=QUERY, headers=token)
            assert response.status_code == 200, response.text
            assert_on_base_url(next_link(response), page=2)
            refused = via_alias.get(ISSUES, params=QUERY, headers={**token, "Host": "evil.test"})
            assert refused.status_code == 400


def test_an_allowed_alias_cannot_steer_a_trailing_slash_redirect(
    alias_app: FastAPI, token: dict[str, str]
) -> None:
    """Starlette's trailing-slash redirect is absolute and built from the request: it too
    names the base URL, however the client addressed the server."""
    with TestClient(alias_app, base_url="https://eu.alias.test:8443") as via_alias:
        response = via_alias.get(ISSUES.rstrip("/"), headers=token, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == BASE_URL + ISSUES


@pytest.mark.parametrize(
    ("base_url", "accepted", "refused"),
    [
        ("http://testserver", ["testserver", "TestServer:80"], ["localhost", "127.0.0.1"]),
        (
            "http://127.0.0.1:8123",
            ["127.0.0.1:8123", "localhost:8123", "[::1]:8123", "127.0.0.1"],
            ["evil.test:8123", "127.0.0.2:8123", "[::2]:8123"],
        ),
        ("http://[::1]:8000", ["[::1]:8000", "[::1]", "localhost:8000", "127.0.0.1:8000"],
         ["[::2]:8000", "evil.test"]),
        ("https://scopegate.example", ["scopegate.example", "scopegate.example:443"],
         ["localhost", "127.0.0.1", "[::1]", "example", "evil.scopegate.example"]),
    ],
)
def test_only_the_base_url_host_and_its_aliases_are_served(
    sqlite_url: str, base_url: str, accepted: list[str], refused: list[str]
) -> None:
    app = create_app(make_settings(sqlite_url, base_url=base_url))
    try:
        with TestClient(app, base_url=base_url) as client:
            for host in accepted:
                answer = client.get("/openapi.json", headers={"Host": host})
                assert answer.status_code == 200, (host, answer.text)
            for host in [*refused, "", "a b", "::1", "[::1", "evil.test/x"]:
                answer = client.get("/openapi.json", headers={"Host": host})
                assert answer.status_code == 400, (host, answer.status_code)
    finally:
        app.state.runtime.engine.dispose()


def test_host_patterns_bracket_ipv6_and_reject_bad_wildcards() -> None:
    assert host_patterns(["2001:DB8::1", "Example.COM", "example.com", " ", "*.a.test"]) == [
        "[2001:db8::1]", "example.com", "*.a.test"
    ]
    for bad in ("a.*.test", "*a.test", "api.*"):
        with pytest.raises(ValueError, match="wildcard"):
            host_patterns([bad])
