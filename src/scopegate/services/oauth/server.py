"""Authlib's authorization server on our store: the framework-neutral half of the glue.

Authlib ships integrations for Flask and Django only. This module is the part of such an
integration that does not touch a web framework: a request type any caller fills
(``OAuthRequest``), a response type (``OAuthResponse``) and ``AuthorizationServer`` bound
to one unit of work's ``Session``. ``web/oauth/`` turns Starlette requests into
``OAuthRequest``s and ``OAuthResponse``s back into responses; Authlib decides.

A server is built per unit of work (registering grants and endpoints is a few list
appends), so its callbacks (``query_client``, ``save_token``, the grants' lookups) use
that unit's session and never a global.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import AuthorizationServer as _AuthorizationServer
from authlib.oauth2.rfc6749 import JsonPayload, JsonRequest, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc9207 import IssuerParameter
from sqlalchemy.orm import Session

from scopegate.core import scopes as registry
from scopegate.services.authentication import AuthenticatorChain
from scopegate.services.deny_list import DenyList
from scopegate.services.oauth import clients, tokens
from scopegate.services.oauth.metadata_documents import MetadataDocuments
from scopegate.settings import Settings

#: Scopes a person can grant an app: every scope some role holds (token-only ones, which
#: no role holds, could never be granted).
GRANTABLE_SCOPES = registry.ordered(registry.ALL_SCOPES - registry.TOKEN_ONLY_SCOPES)
#: Longest value of any single OAuth parameter we read.
PARAMETER_MAX = 2048


class Payload(OAuth2Payload):
    """Query and form parameters together (what Flask calls ``request.values``)."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class OAuthRequest(OAuth2Request):
    """An HTTP request as Authlib reads it; ``uri`` is built from the base URL."""

    def __init__(self, method: str, uri: str, headers: Mapping[str, str],
                 query: Sequence[tuple[str, str]] = (),
                 form: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self.payload = Payload([*query, *form])
        self._args = {k: v for k, v in reversed(query)}
        self._form = {k: v for k, v in reversed(form)}
        #: Set by the consent page before it asks for the authorization response.
        self.consent: Consent | None = None

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class JsonBody(JsonPayload):
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        return self._data


class OAuthJsonRequest(JsonRequest):
    """A JSON request (client registration) as Authlib reads it."""

    def __init__(self, method: str, uri: str, headers: Mapping[str, str],
                 data: dict[str, Any]) -> None:
        super().__init__(method, uri, headers)
        self.payload = JsonBody(data)


@dataclass
class OAuthResponse:
    """What Authlib answered: status, a JSON object (or ``""``) and headers."""

    status: int
    body: dict[str, Any] | str
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "location"), None)

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != "location"]
        self.headers.append(("Location", value))


@dataclass(frozen=True)
class Person:
    """The resource owner as Authlib's grants carry it (``None``: signed in upstream, in
    proxy mode)."""

    id: int | None

    def get_user_id(self) -> int | None:
        return self.id


@dataclass(frozen=True)
class Consent:
    """What the person decided on the consent page: scopes (already capped at what they
    hold) and organizations."""

    user_id: int
    scopes: frozenset[str]
    org_ids: frozenset[int]


@dataclass(frozen=True)
class ServerContext:
    """What a server needs besides its session: settings, the document fetcher, the
    deny list (a revoked access token takes its agent tokens with it), and the runtime's
    authenticator chain (introspection for resource servers authenticates opaque tokens
    as the gate does; ``None``: such introspection answers inactive)."""

    settings: Settings
    documents: MetadataDocuments
    deny_list: DenyList
    chain: AuthenticatorChain | None = None


class _Issuer(IssuerParameter):
    def __init__(self, issuer: str) -> None:
        self._issuer = issuer

    def get_issuer(self) -> str:
        return self._issuer


class AuthorizationServer(_AuthorizationServer):
    """Authlib's server, answering from ``db``; build one per unit of work."""

    def __init__(self, db: Session, ctx: ServerContext) -> None:
        super().__init__(scopes_supported=GRANTABLE_SCOPES)
        # Imported here: the grant modules import this one for its request types.
        from scopegate.services.oauth import device, endpoints, grants

        self.db = db
        self.ctx = ctx
        self.settings = ctx.settings
        self.register_token_generator("default", self._generate)
        grants.register(self)
        device.register(self)
        endpoints.register(self)
        self.register_extension(_Issuer(ctx.settings.issuer))

    # -- what Authlib asks of an integration -----------------------------------------
    def query_client(self, client_id: str | None) -> clients.Client | None:
        return clients.find_client(self.db, client_id, self.ctx.documents)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        # The grants store their tokens themselves (they know the grant family).
        raise NotImplementedError

    def _generate(self, grant_type: str, client: clients.Client, user: Any = None,
                  scope: str | None = None, expires_in: int | None = None,
                  include_refresh_token: bool = True) -> dict[str, object]:
        return tokens.token_response(
            registry.parse(scope or ""),
            access_seconds=expires_in or self.settings.oauth_access_token_seconds,
            refresh=include_refresh_token and client.check_grant_type(clients.REFRESH_TOKEN),
        )

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def create_json_request(self, request: JsonRequest) -> JsonRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> OAuthResponse:
        # RFC 9700 §4.11: 303, so a browser never re-POSTs the consent form to the client.
        return OAuthResponse(303 if status == 302 else status, body, list(headers or []))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None
