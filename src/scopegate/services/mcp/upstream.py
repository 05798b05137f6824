"""The upstream authorization server, in proxy mode: the front door is its OAuth client.

Authlib's ``AsyncOAuth2Client`` does the client side of the protocol (PKCE S256, the
code exchange and refresh with ``client_secret_basic``); this module discovers the
server (RFC 8414, cached, issuer checked) and turns its answers into ``UpstreamTokens``
or ``UpstreamRefused``. Nothing here logs a token.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from scopegate.services.oauth.upstream_vault import UpstreamTokens
from scopegate.settings import Settings

log = logging.getLogger("scopegate.mcp")
TIMEOUT_SECONDS = 10.0
METADATA_SECONDS = 300.0
#: An upstream token response without ``expires_in`` is taken to last this long.
DEFAULT_EXPIRES_IN = 3600
#: The error after which the upstream grant is gone for good (RFC 6749 §5.2). Not
#: ``invalid_client``: that is this deployment's own credentials (a rotated secret), and
#: must not end every person's grant.
TERMINAL = frozenset({"invalid_grant"})
#: The largest metadata document read from the upstream.
MAX_METADATA_BYTES = 64 * 1024


class UpstreamRefused(Exception):
    """The upstream server refused (``error`` is its RFC 6749 code) or could not be
    reached (``error`` is ``temporarily_unavailable``)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error

    @property
    def terminal(self) -> bool:
        return self.error in TERMINAL


class Upstream:
    def __init__(self, settings: Settings) -> None:
        if (not settings.upstream_issuer or not settings.upstream_client_id
                or settings.upstream_client_secret is None):
            raise ValueError("proxy mode needs the upstream issuer, client id and secret")
        self.issuer = settings.upstream_issuer.rstrip("/")
        self._client_id = settings.upstream_client_id
        self._secret = settings.upstream_client_secret.get_secret_value()
        self.redirect_uri = settings.base_url + "/oauth/callback"
        self.resource = settings.mcp_api
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            self._client_id, self._secret,
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
            redirect_uri=self.redirect_uri, code_challenge_method="S256",
            timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False)

    async def metadata(self) -> dict[str, Any]:
        """The upstream's RFC 8414 metadata, fetched at most every few minutes."""
        if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_SECONDS:
            url = self.issuer + "/.well-known/oauth-authorization-server"
            try:
                async with httpx2.AsyncClient(timeout=TIMEOUT_SECONDS, trust_env=False) as http:
                    answer = await http.get(url)
                document = (answer.json() if answer.status_code == 200
                            and len(answer.content) <= MAX_METADATA_BYTES else None)
            except (httpx2.HTTPError, ValueError):
                document = None
            if (not isinstance(document, dict) or document.get("issuer") != self.issuer
                    or not all(isinstance(document.get(name), str) for name in (
                        "authorization_endpoint", "token_endpoint"))):
                log.warning("upstream authorization server metadata unusable at %s", url)
                raise UpstreamRefused("temporarily_unavailable")
            self._metadata, self._metadata_at = document, time.monotonic()
        return self._metadata

    async def authorization_url(self, *, state: str, code_verifier: str,
                                scopes: tuple[str, ...]) -> str:
        endpoint = (await self.metadata())["authorization_endpoint"]
        async with self._client() as client:
            url, _ = client.create_authorization_url(
                endpoint, state=state, code_verifier=code_verifier, scope=" ".join(scopes),
                resource=self.resource)
        return url

    async def exchange(self, code: str, code_verifier: str) -> UpstreamTokens:
        endpoint = (await self.metadata())["token_endpoint"]
        return await self._token(lambda client: client.fetch_token(
            endpoint, grant_type="authorization_code", code=code, code_verifier=code_verifier,
            redirect_uri=self.redirect_uri, resource=self.resource))

    async def refresh(self, refresh_token: str) -> UpstreamTokens:
        endpoint = (await self.metadata())["token_endpoint"]
        return await self._token(lambda client: client.refresh_token(
            endpoint, refresh_token=refresh_token))

    async def _token(self, call: Any) -> UpstreamTokens:
        try:
            async with self._client() as client:
                token = await call(client)
        except OAuthError as error:
            log.info("upstream token endpoint refused: %s", error.error)
            raise UpstreamRefused(str(error.error or "invalid_request")) from None
        except (httpx2.HTTPError, ValueError) as error:
            log.warning("upstream token endpoint unreachable: %s", type(error).__name__)
            raise UpstreamRefused("temporarily_unavailable") from None
        access, refresh = token.get("access_token"), token.get("refresh_token")
        try:
            expires_in = int(token.get("expires_in") or DEFAULT_EXPIRES_IN)
        except (TypeError, ValueError):
            expires_in = -1
        if (not isinstance(access, str) or not access or expires_in <= 0
                or (refresh is not None and not isinstance(refresh, str))):
            log.warning("upstream token response malformed")
            raise UpstreamRefused("temporarily_unavailable")
        return UpstreamTokens(access, refresh, int(time.time()) + expires_in,
                              str(token.get("scope") or ""))
