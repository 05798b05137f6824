"""The device authorization grant (RFC 8628): a device without a browser shows a short
code; the person types it at ``/oauth/device``, signs in and approves; the device polls.

* User codes are eight letters from Authlib's 20-consonant alphabet (``BCDF-GHJK``): no
  vowels (no words), no digits (no ``0``/``O``, ``1``/``I``); typed case-insensitively,
  with or without the dash. Failed entries are counted per person (``USER_CODE_FAILURES``
  per ``USER_CODE_WINDOW_SECONDS``).
* Polling answers ``authorization_pending`` until the person decides, ``slow_down`` when
  the device polls faster than the interval, ``access_denied``, ``expired_token``.
* A device code yields tokens once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from authlib.common.urls import add_params_to_uri
from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import InvalidGrantError, UnauthorizedClientError
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint as _DeviceEndpoint
from authlib.oauth2.rfc8628 import DeviceCodeGrant as _DeviceCodeGrant
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from scopegate.core import scopes as registry
from scopegate.services.errors import Invalid, NotFound
from scopegate.services.oauth import clients, resources, tokens
from scopegate.services.oauth.grants import AUTH_METHODS
from scopegate.services.oauth.server import Person
from scopegate.store.models import User
from scopegate.store.oauth_models import OAuthClient, OAuthDeviceCode
from scopegate.store.types import utcnow

if TYPE_CHECKING:
    from scopegate.services.oauth.server import AuthorizationServer

DEVICE_PATH = "/oauth/device"
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_FAILURES = 10
USER_CODE_WINDOW_SECONDS = 15 * 60
PENDING, APPROVED, DENIED, USED = "pending", "approved", "denied", "used"
_USER_CODE = re.compile(f"^[{USER_CODE_ALPHABET}]{{8}}$")


def normalize_user_code(typed: str) -> str | None:
    """``BCDF-GHJK`` from what a person typed (any case, dash and spaces optional)."""
    letters = re.sub(r"[\s-]", "", typed[:32]).upper()
    if not _USER_CODE.match(letters):
        return None
    return f"{letters[:4]}-{letters[4:]}"


@dataclass(frozen=True)
class DeviceRequest:
    """A device authorization as the grant and the approval page see it."""

    id: int
    client_pk: int
    client_id: str
    client_name: str
    client_verified: bool
    user_code: str
    scopes: frozenset[str]
    resource: str
    expires_at: datetime
    interval: int
    last_polled_at: datetime | None
    status: str
    user_id: int | None
    org_ids: tuple[int, ...]

    # -- Authlib's DeviceCredentialMixin ---------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_scope(self) -> str:
        return registry.format_scopes(self.scopes)

    def get_user_code(self) -> str:
        return self.user_code

    def is_expired(self) -> bool:
        return self.expires_at <= utcnow()


def _find(db: Session, *where: Any) -> DeviceRequest | None:
    row = db.execute(select(OAuthDeviceCode, OAuthClient).join(
        OAuthClient, OAuthClient.id == OAuthDeviceCode.client_pk).where(*where)).first()
    if row is None:
        return None
    d, c = row
    return DeviceRequest(d.id, c.id, c.client_id, c.name, c.registration == clients.OWNER,
                         d.user_code, d.scopes, d.resource, d.expires_at, d.interval,
                         d.last_polled_at, d.status, d.user_id, tuple(d.org_ids or ()))


def pending_request(db: Session, user_code: str) -> DeviceRequest:
    """The live, undecided device authorization with this (normalized) user code."""
    found = _find(db, OAuthDeviceCode.user_code == user_code)
    if found is None or found.status != PENDING or found.is_expired():
        raise NotFound("That code is unknown or expired.")
    return found


def decide(db: Session, request: DeviceRequest, *, user_id: int, approved: bool,
           scopes: frozenset[str] = frozenset(), org_ids: frozenset[int] = frozenset()) -> None:
    """Record the person's decision; approving needs scopes and organizations."""
    if approved and (not scopes or not org_ids):
        raise Invalid("choose at least one organization you hold a requested scope in")
    done = db.execute(update(OAuthDeviceCode).where(
        OAuthDeviceCode.id == request.id, OAuthDeviceCode.status == PENDING
    ).values(status=APPROVED if approved else DENIED, user_id=user_id,
             scopes=scopes if approved else request.scopes,
             org_ids=sorted(org_ids))).rowcount
    if not done:
        raise NotFound("That code is unknown or expired.")


class DeviceAuthorizationEndpoint(_DeviceEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS
    server: AuthorizationServer

    def __init__(self, server: AuthorizationServer) -> None:
        super().__init__(server)
        self.EXPIRES_IN = server.settings.oauth_device_code_seconds
        self.INTERVAL = server.settings.oauth_device_interval_seconds

    def create_endpoint_response(self, request: Any) -> tuple[int, dict[str, Any], Any]:
        """RFC 8628 §3.1-3.2, as Authlib's, plus the client's grant types and RFC 8707."""
        client = self.authenticate_client(request)
        if not client.check_grant_type(clients.DEVICE_CODE):
            raise UnauthorizedClientError("The client may not use the device flow.")
        self.server.validate_requested_scope(request.payload.scope)
        resource = resources.resolve(request.payload.datalist.get("resource", []),
                                     self.server.settings, db=self.server.db)
        user_code = self.generate_user_code()
        data = {
            "device_code": self.generate_device_code(),
            "user_code": user_code,
            "verification_uri": self.get_verification_uri(),
            "verification_uri_complete": add_params_to_uri(self.get_verification_uri(),
                                                           [("user_code", user_code)]),
            "expires_in": self.EXPIRES_IN,
            "interval": self.INTERVAL,
        }
        self.server.db.add(OAuthDeviceCode(
            device_code_hash=tokens.token_hash(data["device_code"]), user_code=user_code,
            client_pk=client.pk, scopes=registry.parse(client.get_allowed_scope(
                request.payload.scope)),
            resource=resource, interval=self.INTERVAL,
            expires_at=utcnow() + timedelta(seconds=self.EXPIRES_IN),
        ))
        self.server.db.flush()
        return 200, data, default_json_headers

    def generate_user_code(self) -> str:
        while True:  # unique among live codes; collisions are rare (20^8)
            code = super().generate_user_code()
            if self.server.db.scalar(select(OAuthDeviceCode.id).where(
                    OAuthDeviceCode.user_code == code)) is None:
                return code

    def get_verification_uri(self) -> str:
        return self.server.settings.base_url + DEVICE_PATH


class DeviceCodeGrant(_DeviceCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: AuthorizationServer

    def query_device_credential(self, device_code: str) -> DeviceRequest | None:
        found = _find(self.server.db,
                      OAuthDeviceCode.device_code_hash == tokens.token_hash(device_code[:256]))
        if found is not None and found.status == USED:
            raise InvalidGrantError("The device code was already used.")
        return found

    def query_user_grant(self, user_code: str) -> tuple[Person | None, bool] | None:
        found: DeviceRequest = self.request.credential_seen
        if found.status == APPROVED and found.user_id is not None:
            active = self.server.db.scalar(select(User.is_active).where(
                User.id == found.user_id))
            return (Person(found.user_id), True) if active else (None, False)
        if found.status == DENIED:
            return None, False
        return None

    def should_slow_down(self, credential: DeviceRequest) -> bool:
        last = credential.last_polled_at
        return last is not None and (utcnow() - last).total_seconds() < credential.interval

    def validate_device_credential(self, credential: DeviceRequest) -> Any:
        self.request.credential_seen = credential
        self.server.db.execute(update(OAuthDeviceCode).where(
            OAuthDeviceCode.id == credential.id).values(last_polled_at=utcnow()))
        return super().validate_device_credential(credential)

    def save_token(self, token: dict[str, Any]) -> None:
        found: DeviceRequest = self.request.credential
        db = self.server.db
        if not db.execute(update(OAuthDeviceCode).where(
                OAuthDeviceCode.id == found.id, OAuthDeviceCode.status == APPROVED
        ).values(status=USED)).rowcount:
            raise InvalidGrantError("The device code was already used.")
        client: clients.Client = self.request.client
        grant = tokens.open_grant(db, client=client, user_id=found.user_id or 0,
                                  scopes=found.scopes, org_ids=found.org_ids,
                                  resource=found.resource)
        tokens.save(db, grant.id, token,
                    refresh_seconds=self.server.settings.oauth_refresh_token_seconds)
        clients.mark_used(db, client)


def register(server: AuthorizationServer) -> None:
    server.register_grant(DeviceCodeGrant)
    server.register_endpoint(DeviceAuthorizationEndpoint)
