"""Client ID metadata documents: fetched safely (no private addresses, no redirects, size
and time bounds), validated (``client_id`` = URL, redirect URIs), cached for a bounded
time. Real HTTP servers on loopback; resolvers map names to the addresses a test needs."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scopegate.services.oauth import metadata_documents
from scopegate.services.oauth.metadata_documents import (
    MetadataDocumentError,
    MetadataDocuments,
    is_metadata_url,
)


class Site:
    """A loopback HTTP server answering each path with what the test set."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.hits = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits += 1
                status, headers, body = site.answers.get(self.path, (404, {}, b""))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" not in headers and "X-Until-Close" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, document: object, status: int = 200,
              headers: dict[str, str] | None = None) -> str:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.answers[path] = (status, {"Content-Type": "application/json", **(headers or {})},
                              body)
        return self.url(path)


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site()
    yield served
    served.server.shutdown()


def _document(url: str, **fields: object) -> dict[str, object]:
    return {"client_id": url, "client_name": "Doc client",
            "redirect_uris": ["http://127.0.0.1:8123/cb"], **fields}


def documents(**overrides: object) -> MetadataDocuments:
    return MetadataDocuments(**{"allow_loopback": True, "cache_seconds": 300, **overrides})


def test_a_valid_document_on_loopback_is_accepted(site: Site) -> None:
    url = site.url("/client.json")
    site.serve("/client.json", _document(url, client_uri="https://doc.example.com",
                                         grant_types=["authorization_code", "refresh_token"]))
    found = documents().get(url)
    assert found.client_id == url
    assert found.client_name == "Doc client"
    assert found.redirect_uris == ("http://127.0.0.1:8123/cb",)
    assert found.client_uri == "https://doc.example.com"
    assert found.token_endpoint_auth_method == "none"
    assert found.grant_types == ("authorization_code", "refresh_token")


def test_loopback_documents_are_refused_unless_allowed(site: Site) -> None:
    url = site.url("/client.json")
    site.serve("/client.json", _document(url))
    with pytest.raises(MetadataDocumentError):
        documents(allow_loopback=False).get(url)
    assert site.hits == 0


def test_a_document_whose_client_id_differs_from_its_url_is_refused(site: Site) -> None:
    url = site.url("/client.json")
    site.serve("/client.json", _document(site.url("/other.json")))
    with pytest.raises(MetadataDocumentError) as refused:
        documents().get(url)
    assert "client_id" in refused.value.description
    assert url not in refused.value.description


def test_a_document_larger_than_the_limit_is_refused(site: Site) -> None:
    url = site.url("/big.json")
    padding = "x" * (metadata_documents.MAX_DOCUMENT_BYTES + 10)
    site.serve("/big.json", _document(url, client_name="ok", extra=padding))
    with pytest.raises(MetadataDocumentError, match="5 KiB"):
        documents().get(url)
    # Without a Content-Length (streamed to the close), the reader still stops at the limit.
    body = json.dumps(_document(url, extra=padding)).encode()
    # HTTP/1.0 without a length: the body runs until the server closes the connection.
    site.answers["/big.json"] = (200, {"Content-Type": "application/json",
                                       "X-Until-Close": "1"}, body)
    with pytest.raises(MetadataDocumentError, match="5 KiB"):
        documents().get(url)


@pytest.mark.parametrize("address", ["10.0.0.7", "169.254.169.254", "192.168.1.1", "fd00::1",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1"])  # noqa: S104
def test_a_document_on_a_private_address_is_refused_before_any_connection(
        address: str) -> None:
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return [address]

    fetcher = documents(allow_loopback=False, resolve=resolve)
    with pytest.raises(MetadataDocumentError, match="private"):
        fetcher.get("https://client.example.com/meta.json")
    assert asked == ["client.example.com"]


@pytest.mark.parametrize("url", ["https://10.0.0.1/x.json", "https://169.254.169.254/latest",
                                 "https://[::1]/x.json", "https://127.0.0.1/x.json"])
def test_literal_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(MetadataDocumentError, match="private"):
        documents(allow_loopback=False).get(url)


def test_a_name_that_resolves_to_a_private_address_among_public_ones_is_refused() -> None:
    def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.1.2.3"]

    with pytest.raises(MetadataDocumentError, match="private"):
        documents(resolve=resolve).get("https://client.example.com/meta.json")


def test_a_redirect_is_not_followed(site: Site) -> None:
    url = site.url("/moved.json")
    target = site.serve("/real.json", _document(site.url("/real.json")))
    site.answers["/moved.json"] = (302, {"Location": target}, b"")
    with pytest.raises(MetadataDocumentError, match="redirect"):
        documents().get(url)
    assert site.hits == 1


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"a string"'])
def test_non_json_and_non_object_bodies_are_refused(site: Site, body: bytes) -> None:
    url = site.serve("/odd.json", body)
    with pytest.raises(MetadataDocumentError, match="JSON"):
        documents().get(url)


@pytest.mark.parametrize("uris", [["http://evil.test/cb"], ["https://a.test/cb#frag"],
                                  ["https://user@a.test/cb"], []])
def test_bad_redirect_uris_are_refused(site: Site, uris: list[str]) -> None:
    url = site.url("/client.json")
    site.serve("/client.json", _document(url, redirect_uris=uris))
    with pytest.raises(MetadataDocumentError) as refused:
        documents().get(url)
    assert "evil" not in refused.value.description


def test_documents_are_cached_for_the_configured_lifetime(site: Site) -> None:
    url = site.url("/client.json")
    site.serve("/client.json", _document(url))
    cached = documents(cache_seconds=300)
    cached.get(url)
    cached.get(url)
    assert site.hits == 1
    uncached = documents(cache_seconds=0)
    uncached.get(url)
    uncached.get(url)
    assert site.hits == 3


def test_a_slow_server_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts, never answers
    monkeypatch.setattr(metadata_documents, "FETCH_TIMEOUT_SECONDS", 0.3)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/client.json"
        with pytest.raises(MetadataDocumentError, match="could not be fetched"):
            documents().get(url)
    finally:
        silent.close()


@pytest.mark.parametrize(("client_id", "loopback", "expected"), [
    ("https://app.example.com/oauth/client.json", False, True),
    ("https://app.example.com/", False, False),          # no path
    ("https://app.example.com", False, False),
    ("https://user@app.example.com/c.json", False, False),
    ("https://app.example.com/c.json#x", False, False),
    ("https://app.example.com/c.json?x=1", False, False),
    ("http://app.example.com/c.json", False, False),     # plain http
    ("http://127.0.0.1:8000/c.json", False, False),
    ("http://127.0.0.1:8000/c.json", True, True),
    ("http://localhost/c.json", True, True),
    ("https://app.example.com/" + "x" * 200, False, False),
    ("Vq0c7rJv3k1", False, False),                        # a plain client id
])
def test_is_metadata_url_cases(client_id: str, loopback: bool, expected: bool) -> None:
    assert is_metadata_url(client_id, allow_loopback=loopback) is expected
