"""The Ed25519 key ring that signs agent tokens (RFC 8037 ``EdDSA``), kept in the database.

Private keys are encrypted at rest with AES-256-GCM under a key derived (HKDF-SHA256)
from the server secret, with the ``kid`` as associated data. Exactly one key is active
(a partial unique index enforces it). ``rotate`` activates a new key and keeps the old
public key published until every token it signed has expired.

Each process caches the ring and picks up keys rotated by another process by reloading
it after ``RELOAD_SECONDS``, or when a token names a ``kid`` it has not seen (at most once
a second). A reload never runs in the thread of a request: the request that notices the
ring is stale keeps using it and hands the reload to a background thread with its own
database connection (stale-while-revalidate), so no request holds its transaction,
its connection or a lock that others wait on while the ring loads. Only a token with an
unknown ``kid`` waits for that reload, without holding a lock, for at most
``UNKNOWN_KID_WAIT_SECONDS``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from scopegate.core.agent_token import ALGORITHM
from scopegate.core.changes import Change, Topic
from scopegate.services.errors import Unavailable
from scopegate.store.models import SigningKey
from scopegate.store.outbox import record_change
from scopegate.store.types import utcnow

log = logging.getLogger("scopegate.keys")

RELOAD_SECONDS = 30.0
UNKNOWN_KID_RELOAD_SECONDS = 1.0
UNKNOWN_KID_WAIT_SECONDS = 2.0
#: Reloads of every ring in the process run here, never in a request's thread.
_reloader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scopegate-keyring")
#: Old public keys outlive the longest token by this margin (clock leeway included).
RETIRE_MARGIN = timedelta(minutes=5)


class UnknownKid(LookupError):
    """A ``kid`` the loaded ring does not hold; a reload (which may wait) might find it."""


@dataclass(frozen=True)
class PublicKey:
    kid: str
    key: Ed25519PublicKey


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    key: Ed25519PrivateKey


def derived_key(server_secret: str, purpose: bytes) -> bytes:
    """A 32-byte key for one ``purpose``, derived (HKDF-SHA256) from the server secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=purpose).derive(server_secret.encode())


class SecretMismatch(RuntimeError):
    """The signing keys in the database were sealed under another server secret: this
    process's ``SCOPEGATE_SECRET_KEY`` differs from the one that created them (in a
    fleet, every process needs the same). Never served around: it cannot sign."""

    def __init__(self) -> None:
        super().__init__("the signing keys in the database cannot be opened with this "
                         "SCOPEGATE_SECRET_KEY: it differs from the one they were created "
                         "with (every process must use the same secret), or a key row was "
                         "altered")


class KeyEncryption:
    """AES-GCM wrapping of private keys under a key derived from the server secret."""

    def __init__(self, server_secret: str) -> None:
        self._aead = AESGCM(derived_key(server_secret, b"scopegate signing-key encryption v1"))

    def seal(self, kid: str, private: Ed25519PrivateKey) -> bytes:
        raw = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, raw, kid.encode())

    def open(self, kid: str, sealed: bytes) -> Ed25519PrivateKey:
        try:
            raw = self._aead.decrypt(sealed[:12], sealed[12:], kid.encode())
        except InvalidTag:
            raise SecretMismatch() from None
        return Ed25519PrivateKey.from_private_bytes(raw)


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class KeyRing:
    def __init__(self, factory: sessionmaker[Session], server_secret: str) -> None:
        self._factory = factory
        self._crypto = KeyEncryption(server_secret)
        self._lock = threading.Lock()
        self._active: ActiveKey | None = None
        self._public: dict[str, PublicKey] = {}
        self._loaded_at = float("-inf")
        self._unknown_kid_at = float("-inf")
        self._reloading: Future[None] | None = None

    # -- reading -----------------------------------------------------------------
    def _load(self) -> None:
        with self._factory() as db:
            rows = list(
                db.scalars(
                    select(SigningKey).where(
                        or_(SigningKey.retire_after.is_(None), SigningKey.retire_after > utcnow())
                    )
                )
            )
        public = {
            row.kid: PublicKey(row.kid, Ed25519PublicKey.from_public_bytes(row.public_key))
            for row in rows
        }
        active_row = next((row for row in rows if row.active), None)
        active = (
            ActiveKey(active_row.kid, self._crypto.open(active_row.kid,
                                                        active_row.private_key_encrypted))
            if active_row is not None else None
        )
        self._public, self._active, self._loaded_at = public, active, time.monotonic()

    def load(self) -> None:
        """Load the ring now, in the calling thread: at start-up and from the CLI only."""
        self._load()

    def _reload_in_background(self) -> Future[None]:
        """Start a background reload unless one is under way; return it."""
        with self._lock:
            if self._reloading is None or self._reloading.done():
                self._reloading = _reloader.submit(self._reload_logged)
            return self._reloading

    def _reload_logged(self) -> None:
        try:
            self._load()
        except Exception as error:  # keep serving the ring we have; the next use retries
            log.warning("could not reload the signing keys: %s", type(error).__name__)

    def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at > RELOAD_SECONDS:
            self._reload_in_background()

    def active(self) -> ActiveKey:
        """The signing key. The ring must have been loaded (``load``/``ensure_active``)."""
        self._fresh()
        if self._active is None:
            raise Unavailable("No signing key yet: run `scopegate migrate` first.")
        return self._active

    def ensure_active(self) -> None:
        """Create the first signing key if the ring is empty, then load the ring.
        Runs at start-up, outside any request."""
        self._load()
        if self._active is None:
            self._create_first()
            self._load()

    def public_key(self, kid: str, *, may_wait: bool = True) -> PublicKey | None:
        """The public key for ``kid`` if it is still published. An unknown ``kid`` may
        be a key another process just made: with ``may_wait`` (never on an event loop),
        wait briefly for a reload; without, raise ``UnknownKid`` so the caller can ask
        again from a thread."""
        self._fresh()
        found = self._public.get(kid)
        if found is not None:
            return found
        if not may_wait:
            raise UnknownKid(kid)
        now = time.monotonic()
        with self._lock:
            stale = now - self._unknown_kid_at > UNKNOWN_KID_RELOAD_SECONDS
            if stale:
                self._unknown_kid_at = now
            in_flight = self._reloading is not None and not self._reloading.done()
        if not stale and not in_flight:
            return None
        try:
            self._reload_in_background().result(timeout=UNKNOWN_KID_WAIT_SECONDS)
        except FutureTimeout:
            return None
        return self._public.get(kid)

    def jwks(self) -> dict[str, list[dict[str, object]]]:
        """The published public keys as an RFC 7517 JWK Set."""
        self._fresh()
        keys = []
        for public in sorted(self._public.values(), key=lambda p: p.kid):
            jwk = OKPAlgorithm.to_jwk(public.key, as_dict=True)
            keys.append({**jwk, "kid": public.kid, "use": "sig", "alg": ALGORITHM})
        return {"keys": keys}

    # -- writing -----------------------------------------------------------------
    def _new_row(self) -> SigningKey:
        kid = secrets.token_urlsafe(12)
        private = Ed25519PrivateKey.generate()
        return SigningKey(
            kid=kid,
            private_key_encrypted=self._crypto.seal(kid, private),
            public_key=_public_bytes(private.public_key()),
            active=True,
        )

    def _create_first(self) -> None:
        try:
            with self._factory() as db, db.begin():
                if db.scalar(select(SigningKey.kid).where(SigningKey.active)) is None:
                    db.add(self._new_row())
        except IntegrityError:
            pass  # another process created it first; _load picks that one up

    def rotate(self, db: Session, max_token_ttl_seconds: int) -> str:
        """Make a new active key; retire the old one once its tokens have expired.

        Runs in the caller's transaction (``db``); returns the new ``kid``.
        """
        now = utcnow()
        db.execute(
            update(SigningKey)
            .where(SigningKey.active)
            .values(
                active=False,
                retired_at=now,
                retire_after=now + timedelta(seconds=max_token_ttl_seconds) + RETIRE_MARGIN,
            )
        )
        db.flush()
        row = self._new_row()
        db.add(row)
        db.flush()
        record_change(db, Change(Topic.KEYS))
        return row.kid

    def mark_stale(self) -> None:
        """Treat the ring as stale: the next use starts a background reload."""
        with self._lock:
            self._loaded_at = float("-inf")

    def settle(self, timeout: float) -> bool:
        """Wait for a background reload under way, if any (for scripts and tests that
        need to know it is over; requests never wait here). ``False``: still running."""
        with self._lock:
            reloading = self._reloading
        if reloading is None:
            return True
        try:
            reloading.result(timeout=timeout)
        except FutureTimeout:
            return False
        return True
