"""The official ``mcp`` client, logged in the way a person would: ``OAuthClientProvider``
with a token storage in memory, and redirect/callback handlers that complete the
scopegate login, consent and agent-approval forms through an HTTP client.

    person = Person(base_url, email)               # signed in to scopegate's pages
    auth = person.oauth(mcp_url, redirect_port)    # discovery, registration, consent
    async with person.client(mcp_url, auth) as client:
        await client.list_tools()
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import unescape
from typing import Any

import anyio.to_thread
import httpx
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from mcp_types import ElicitRequestParams, ElicitResult

from support.http import login
from support.oauth import decide, query_of

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


class MemoryTokens:
    """``TokenStorage`` in memory; ``tokens`` and ``client_info`` are there to inspect."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Person:
    """A person signed in to scopegate's pages, who consents and approves when asked."""

    def __init__(self, base_url: str, email: str, orgs: tuple[str, ...] = ("acme",)) -> None:
        self.browser = httpx.Client(base_url=base_url)
        login(self.browser, email)  # type: ignore[arg-type]
        self.orgs = orgs
        self.storage = MemoryTokens()
        self.authorize_urls: list[str] = []
        self.approval_urls: list[str] = []
        self._redirect: str | None = None

    def close(self) -> None:
        self.browser.close()

    # -- OAuth: consent in the browser -------------------------------------------------
    async def _redirect_handler(self, url: str) -> None:
        self.authorize_urls.append(url)

        def consent() -> str:
            page = self.browser.get(url, follow_redirects=False)
            answer = decide(self.browser, page, "approve", self.orgs)
            assert answer.status_code == 303, answer.text[:500]
            return answer.headers["location"]
        self._redirect = await anyio.to_thread.run_sync(consent)

    async def _callback_handler(self) -> AuthorizationCodeResult:
        assert self._redirect is not None, "no authorization happened"
        query = query_of(self._redirect)
        self._redirect = None
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"),
                                       iss=query.get("iss"))

    def oauth(self, mcp_url: str, redirect_uri: str = "http://127.0.0.1:8123/callback", *,
              client_metadata_url: str | None = None) -> OAuthClientProvider:
        metadata = OAuthClientMetadata(
            client_name="Test MCP client", redirect_uris=[redirect_uri],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"], response_types=["code"],
            token_endpoint_auth_method="none",
        )
        return OAuthClientProvider(
            mcp_url, metadata, self.storage, redirect_handler=self._redirect_handler,
            callback_handler=self._callback_handler, client_metadata_url=client_metadata_url)

    # -- agent approvals ----------------------------------------------------------------
    def approve(self, url: str) -> None:
        """Open an approval URL and approve everything it asks for."""
        self.approval_urls.append(url)
        page = self.browser.get(url)
        assert page.status_code == 200, page.text[:500]
        fields: dict[str, list[str]] = {}
        for key, value in _HIDDEN.findall(page.text):
            fields.setdefault(key, []).append(unescape(value))
        fields["decision"] = ["approve"]
        action = httpx.URL(url).path
        answer = self.browser.post(action, data=fields, follow_redirects=False)
        assert answer.is_success and "Approved" in answer.text, answer.text[:500]

    async def elicitation(self, _context: Any, params: ElicitRequestParams) -> ElicitResult:
        """An ``elicitation_callback`` that approves the URL it is shown."""
        url = getattr(params, "url", None)
        assert url is not None, "only URL elicitations are expected"
        await anyio.to_thread.run_sync(self.approve, url)
        return ElicitResult(action="accept")

    @asynccontextmanager
    async def client(self, mcp_url: str, auth: httpx2.Auth, *, elicit: bool = True,
                     mode: str = "auto") -> AsyncIterator[Client]:
        async with httpx2.AsyncClient(auth=auth, timeout=30) as http, Client(
            streamable_http_client(mcp_url, http_client=http),
            elicitation_callback=self.elicitation if elicit else None,
            mode=mode,  # type: ignore[arg-type]
        ) as client:
            yield client


def tool_text(result: object) -> str:
    """The text blocks of a tool result, joined."""
    return "\n".join(getattr(block, "text", "") for block in result.content)  # type: ignore[attr-defined]


async def approve_from_tool_error(client: Client, person: Person, tool: str,
                                  arguments: dict[str, Any], base_url: str) -> Any:
    """A write refused with its approval link in the tool error (a client without URL
    elicitation): the person approves at that link, and the retry's result is returned."""
    refused = await client.call_tool(tool, arguments)
    assert refused.is_error
    text = tool_text(refused)
    assert "retry" in text
    url = text.split("Open ", 1)[1].split(" ", 1)[0]
    assert url.startswith(base_url + "/organizations/acme/agent/approve?")
    await anyio.to_thread.run_sync(person.approve, url)
    return await client.call_tool(tool, arguments)


@asynccontextmanager
async def bearer_client(mcp_url: str, token: str) -> AsyncIterator[Client]:
    """The official client presenting a fixed bearer token (no OAuth flow)."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                  timeout=30) as http, Client(
            streamable_http_client(mcp_url, http_client=http)) as client:
        yield client


_CONTINUE = re.compile(r'<a href="([^"]+)" id="continue">')


def continue_url(answer: httpx.Response) -> str:
    """Where the front door's callback page sends the browser on (its refresh and link)."""
    assert answer.status_code == 200, answer.text[:500]
    found = _CONTINUE.search(answer.text)
    assert found, answer.text[:500]
    return unescape(found.group(1))


class ProxyPerson(Person):
    """A person signed in at the *upstream* scopegate, signing in to a front door: the
    front door's client approval page (choosing ``capabilities``), then the upstream's
    consent, then back through the front door's callback."""

    def __init__(self, upstream_url: str, email: str, capabilities: tuple[str, ...] = (
            "inspect", "triage"), orgs: tuple[str, ...] = ("acme",)) -> None:
        super().__init__(upstream_url, email, orgs)
        self.capabilities = capabilities
        self.upstream_authorize_urls: list[str] = []
        self.approval_pages = 0

    def sign_in(self, authorize_url: str) -> str:
        """Through the front door and the upstream; the ``Location`` back to the client."""
        answer = self.browser.get(authorize_url, follow_redirects=False)
        if answer.status_code == 200:  # the client approval page
            self.approval_pages += 1
            fields: dict[str, list[str]] = {}
            for key, value in _HIDDEN.findall(answer.text):
                if key != "capabilities":
                    fields.setdefault(key, []).append(unescape(value))
            fields["capabilities"] = list(self.capabilities)
            fields["decision"] = ["approve"]
            answer = self.browser.post(authorize_url.split("?")[0], data=fields,
                                       follow_redirects=False)
        assert answer.status_code == 303, answer.text[:500]
        upstream = answer.headers["location"]
        self.upstream_authorize_urls.append(upstream)
        consent = self.browser.get(upstream, follow_redirects=False)
        back = decide(self.browser, consent, "approve", self.orgs)
        assert back.status_code == 303, back.text[:500]
        callback = back.headers["location"]
        return continue_url(self.browser.get(callback, follow_redirects=False))

    async def _redirect_handler(self, url: str) -> None:
        self.authorize_urls.append(url)
        self._redirect = await anyio.to_thread.run_sync(self.sign_in, url)
