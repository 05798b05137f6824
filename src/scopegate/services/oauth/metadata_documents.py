"""Client ID Metadata Documents: a ``client_id`` that is an ``https://`` URL names a JSON
document (RFC 7591 fields) the client publishes about itself.

Fetching a URL a stranger chose is a server-side request forgery waiting to happen, so:
the host is resolved first and refused if any address is not global (private, loopback,
link-local, multicast, reserved); the connection goes to the checked address (pinned,
against DNS rebinding; TLS still verifies the name through SNI); no redirects; a short
timeout; at most ``MAX_DOCUMENT_BYTES`` read. Loopback ``http://`` documents are allowed
only by a setting meant for development and tests. A document's ``client_id`` must equal
its URL exactly. Good documents are cached for a bounded time; failures are not.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

import certifi
import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scopegate.core import redirect_uris

MAX_DOCUMENT_BYTES = 5 * 1024
FETCH_TIMEOUT_SECONDS = 3.0
#: Longest metadata URL accepted (it becomes the token's ``act`` claim when an agent
#: token is minted with the client's access token).
URL_MAX = 128
Resolver = Callable[[str, int], list[str]]


class MetadataDocumentError(Exception):
    """A document could not be used; ``description`` names the rule, never the URL."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class ClientMetadataDocument:
    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]
    client_uri: str | None
    logo_uri: str | None
    token_endpoint_auth_method: str
    grant_types: tuple[str, ...]
    fetched_at: float


Uri = Annotated[str, Field(max_length=512)]


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore")

    client_id: str = Field(max_length=URL_MAX)
    client_name: str = Field(default="", max_length=128)
    redirect_uris: list[Uri] = Field(min_length=1, max_length=10)
    client_uri: Uri | None = None
    logo_uri: Uri | None = None
    token_endpoint_auth_method: Literal["none"] = "none"  # noqa: S105
    grant_types: list[Literal["authorization_code", "refresh_token"]] = Field(
        default_factory=lambda: ["authorization_code"], min_length=1, max_length=2)
    response_types: list[Literal["code"]] = Field(default_factory=lambda: ["code"],
                                                  max_length=1)


def _loopback_host(host: str | None) -> bool:
    return host in redirect_uris.LOOPBACK_HOSTS


def is_metadata_url(client_id: str, *, allow_loopback: bool = True) -> bool:
    """Whether ``client_id`` has the shape of a metadata document URL (no I/O): https
    with a host and a path, no userinfo, fragment or query; or, when allowed, http on a
    loopback host."""
    if not client_id or len(client_id) > URL_MAX or not client_id.isascii():
        return False
    try:
        parts = urlsplit(client_id)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        return False
    if not parts.hostname or "@" in parts.netloc or parts.fragment or parts.query:
        return False
    if parts.path in ("", "/") or "#" in client_id:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and allow_loopback and _loopback_host(parts.hostname)


def _default_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class MetadataDocuments:
    """Fetches, validates and caches client metadata documents."""

    def __init__(self, *, allow_loopback: bool, cache_seconds: float,
                 resolve: Resolver | None = None, max_entries: int = 1000,
                 ca_file: Path | None = None) -> None:
        self._allow_loopback = allow_loopback
        # The public roots, plus an operator's own CA when configured (an internal one).
        self._verify = ssl.create_default_context(cafile=certifi.where())
        if ca_file is not None:
            self._verify.load_verify_locations(cafile=str(ca_file))
        self._cache_seconds = cache_seconds
        self._resolve = resolve or _default_resolve
        self._max = max_entries
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, ClientMetadataDocument] = OrderedDict()

    def is_metadata_url(self, client_id: str) -> bool:
        return is_metadata_url(client_id, allow_loopback=self._allow_loopback)

    def forget(self, url: str) -> None:
        with self._lock:
            self._cache.pop(url, None)

    def get(self, url: str) -> ClientMetadataDocument:
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None and time.time() - cached.fetched_at < self._cache_seconds:
            return cached
        document = self._fetch(url)
        if self._cache_seconds > 0:
            with self._lock:
                self._cache[url] = document
                self._cache.move_to_end(url)
                while len(self._cache) > self._max:
                    self._cache.popitem(last=False)
        return document

    # -- fetching ----------------------------------------------------------------------
    def _checked_address(self, host: str, port: int) -> str:
        try:
            addresses = self._resolve(host, port)
        except OSError:
            raise MetadataDocumentError(
                "The client metadata document's host could not be resolved.") from None
        if not addresses:
            raise MetadataDocumentError(
                "The client metadata document's host could not be resolved.")
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if ip.is_global and not ip.is_multicast:
                continue
            if ip.is_loopback and self._allow_loopback:
                continue
            raise MetadataDocumentError("The client metadata document is on a private, "
                                        "loopback or link-local address.")
        return addresses[0]

    def _fetch(self, url: str) -> ClientMetadataDocument:
        if not self.is_metadata_url(url):
            raise MetadataDocumentError("The client_id is not a metadata document URL.")
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = self._checked_address(host, port)
        pinned_host = f"[{address}]" if ":" in address else address
        pinned = urlunsplit((parts.scheme, f"{pinned_host}:{port}", parts.path, "", ""))
        headers = {"Host": parts.netloc, "Accept": "application/json"}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        body = bytearray()
        try:
            with httpx.Client(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False,
                              trust_env=False, verify=self._verify) as client, client.stream(
                    "GET", pinned, headers=headers, extensions=extensions) as response:
                if response.is_redirect:
                    raise MetadataDocumentError("The client metadata document redirects; "
                                                "redirects are not followed.")
                if response.status_code != 200:
                    raise MetadataDocumentError(
                        "The client metadata document could not be fetched.")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
                    raise MetadataDocumentError(
                        "The client metadata document is larger than 5 KiB.")
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise MetadataDocumentError(
                            "The client metadata document is larger than 5 KiB.")
        except httpx.HTTPError:
            raise MetadataDocumentError(
                "The client metadata document could not be fetched.") from None
        return _parse(url, bytes(body))


def _parse(url: str, body: bytes) -> ClientMetadataDocument:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MetadataDocumentError("The client metadata document is not JSON.") from None
    if not isinstance(data, dict):
        raise MetadataDocumentError("The client metadata document is not a JSON object.")
    try:
        document = _Document.model_validate(data)
    except ValidationError:
        raise MetadataDocumentError("The client metadata document has an invalid or "
                                    "missing field.") from None
    if document.client_id != url:
        raise MetadataDocumentError(
            "The client metadata document's 'client_id' does not equal its URL.")
    try:
        uris = tuple(redirect_uris.validate(uri) for uri in document.redirect_uris)
    except redirect_uris.InvalidRedirectURI:
        raise MetadataDocumentError(
            "The client metadata document has an invalid 'redirect_uris'.") from None
    return ClientMetadataDocument(
        client_id=url, client_name=document.client_name or (urlsplit(url).hostname or url),
        redirect_uris=uris, client_uri=document.client_uri, logo_uri=document.logo_uri,
        token_endpoint_auth_method=document.token_endpoint_auth_method,
        grant_types=tuple(document.grant_types), fetched_at=time.time(),
    )
