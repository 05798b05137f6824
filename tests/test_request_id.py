"""The request id: accepted when well formed, generated otherwise, echoed on every
response (404, 401 and 500 included), and carried by the request's access log line."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scopegate.web.request_id import accepted_or_new
from support.http import bearer
from support.settings import BASE_URL

GENERATED = re.compile(r"[0-9a-f]{32}")


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "scopegate.access"]


@pytest.mark.parametrize("given", ["abc", "req-1.2:3_x", "A" * 128,
                                   "0af7651916cd43dd8448eb211c80319c"])
def test_a_well_formed_id_is_accepted(given: str) -> None:
    assert accepted_or_new(given.encode()) == given


@pytest.mark.parametrize("given", [b"", b"A" * 129, b"has space", b"semi;colon", b"quote\"",
                                   b"new\nline", b"caf\xc3\xa9", b"<script>"])
def test_a_malformed_id_is_replaced_by_a_new_one(given: bytes) -> None:
    assert GENERATED.fullmatch(accepted_or_new(given))


def test_an_id_is_generated_per_request_when_none_is_sent(client: TestClient) -> None:
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second)
    assert first != second


def test_a_given_id_is_echoed_and_a_bad_one_is_not(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "lb-42"}).headers[
        "x-request-id"] == "lb-42"
    bad = client.get("/healthz", headers={"X-Request-ID": "x" * 200})
    assert GENERATED.fullmatch(bad.headers["x-request-id"])


def test_the_id_is_echoed_on_refusals_and_unknown_paths(client: TestClient) -> None:
    for path, headers, status in [
        ("/no/such/path", {}, 404),
        ("/api/0/organizations/acme/", {}, 401),
        ("/api/0/organizations/acme/", bearer("sgu_not-a-real-token"), 401),
    ]:
        response = client.get(path, headers={**headers, "X-Request-ID": "rid-refused"})
        assert response.status_code == status, (path, response.text)
        assert response.headers["x-request-id"] == "rid-refused"
    # Only one X-Request-ID, even when a route would have set its own.
    response = client.get("/healthz", headers={"X-Request-ID": "only-one"})
    assert response.headers.get_list("x-request-id") == ["only-one"]


def test_the_id_is_echoed_on_a_500_and_logged_with_it(app: FastAPI,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    async def boom(_: Request) -> Response:
        raise RuntimeError("a bug")

    app.router.routes.append(Route("/test-only/boom", endpoint=boom))
    caplog.set_level(logging.INFO, logger="scopegate")
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        response = client.get("/test-only/boom", headers={"X-Request-ID": "rid-500"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "rid-500"
    [line] = [r for r in access_records(caplog) if r.__dict__["request_id"] == "rid-500"]
    assert line.__dict__["status"] == 500
    assert line.__dict__["route"] == "/test-only/boom"


def test_each_request_gets_one_access_line_with_its_id(client: TestClient,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scopegate")
    client.get("/api/0/organizations/acme/projects/?cursor=1",
               headers={"X-Request-ID": "rid-line"})
    [line] = [r for r in access_records(caplog) if r.__dict__["request_id"] == "rid-line"]
    fields = line.__dict__
    assert fields["method"] == "GET"
    assert fields["route"] == "/api/0/organizations/{org}/projects/"  # the template
    assert fields["status"] == 401
    assert fields["duration_ms"] >= 0
    assert fields["client"]
    assert fields["target"] == "/api/0/organizations/acme/projects/?cursor=1"
