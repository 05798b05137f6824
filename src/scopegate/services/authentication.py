"""The authenticator chain: bearer string -> ``Principal``, routed by prefix, from memory.

Each authenticator owns one ``TokenKind``; the chain picks it with ``startswith`` and
so never parses a token of another kind. Anything unrouted, unknown, revoked or expired
raises ``AuthenticationFailed`` with a fixed description (never the token).

Authenticators answer from their caches when the ``ChangeFeed`` is fresh. Given no
connection (``conn=None``, the request's event loop) and a miss, they raise ``NeedsIO``;
the gate then runs them again in a worker thread with a connection, where a miss costs
one query per credential.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection, Table

from scopegate.core.access import Principal
from scopegate.core.changes import Topic
from scopegate.core.token_kinds import TokenKind
from scopegate.services.caches import MISSING, BoundedCache
from scopegate.services.change_feed import ChangeFeed
from scopegate.services.last_used import LastUsed

#: Longest bearer string considered at all (agent JWS included).
MAX_TOKEN_LENGTH = 4096
CACHE_ENTRIES = 100_000


class AuthenticationFailed(Exception):
    """The credential is missing, malformed, unknown, revoked or expired."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class NeedsIO(Exception):
    """The answer is not in memory: ask again with a database connection."""


class Authenticator(Protocol):
    kind: TokenKind

    def authenticate(self, token: str, conn: Connection | None) -> Principal: ...


@dataclass(frozen=True)
class StoredCredential:
    """What the database says of a stored (hashed) credential, as cached.

    ``principal`` is ``None`` when the credential is unknown, revoked or its person
    inactive; ``failure`` then says which. ``expires_at`` is checked at every use.
    """

    principal: Principal | None
    failure: str = "The access token is invalid."
    expires_at: float | None = None
    table: Table | None = None
    row_id: int = 0


UNKNOWN = StoredCredential(None)
Loader = Callable[[Connection, str], StoredCredential]


class StoredTokenAuthenticator:
    """A credential stored by SHA-256 (user and org tokens; later integration, OAuth)."""

    def __init__(self, kind: TokenKind, load: Loader, feed: ChangeFeed,
                 last_used: LastUsed, digest: Callable[[str], str]) -> None:
        self.kind = kind
        self._load = load
        self._feed = feed
        self._last_used = last_used
        self._digest = digest
        self.cache: BoundedCache[str, StoredCredential] = BoundedCache(
            CACHE_ENTRIES, f"credentials_{kind.name.lower()}")
        feed.subscribe(Topic.CREDENTIAL, self.cache.forget)

    def authenticate(self, token: str, conn: Connection | None) -> Principal:
        digest = self._digest(token)
        entry = self.cache.get(digest) if self._feed.fresh() else MISSING
        if entry is MISSING:
            if conn is None:
                raise NeedsIO
            generation = self.cache.generation
            entry = self._load(conn, digest)
            self.cache.put(digest, entry, generation)
        principal = entry.principal
        if principal is None:
            raise AuthenticationFailed(entry.failure)
        if entry.expires_at is not None and entry.expires_at <= time.time():
            raise AuthenticationFailed("The access token expired.")
        if entry.table is not None:
            self._last_used.note(entry.table, entry.row_id)
        return principal


class AuthenticatorChain:
    """Routes a bearer string to the one authenticator whose prefix it carries."""

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self._by_prefix = {a.kind.prefix: a for a in authenticators}
        #: The prefixes' lengths (one, 4, today): a token's kind is one dict lookup of
        #: its first characters, whichever authenticator it belongs to.
        self._prefix_lengths = sorted({len(prefix) for prefix in self._by_prefix})

    def authenticate(self, token: str, conn: Connection | None) -> Principal:
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise AuthenticationFailed("The access token is malformed.")
        for length in self._prefix_lengths:
            authenticator = self._by_prefix.get(token[:length])
            if authenticator is not None:
                return authenticator.authenticate(token, conn)
        raise AuthenticationFailed("The access token is invalid.")
