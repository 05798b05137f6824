"""What one scopegate process holds, built once from ``Settings``: the composition root.

The app (``web/app.py``), the CLI and the tests build a ``Runtime`` the same way and
share nothing else. ``start``/``stop`` bracket its life (the app's lifespan calls
them): ``start`` loads the key ring, confirms the caches against the change counters,
listens on the bus and starts the upkeep thread; ``stop`` flushes what is pending and
gives every connection back.

Building never writes: migrations and the first signing key belong to ``prepare``
(``runtime/prepare.py``), run by ``scopegate migrate`` and ``scopegate serve`` under a
lock, so N processes starting at once cannot race.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio.to_thread
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, sessionmaker

from scopegate.core.changes import Change
from scopegate.core.token_kinds import TokenKind
from scopegate.runtime.audit_batches import AuditBatches
from scopegate.services import audit, credentials, deploy_hook, integrations
from scopegate.services.access import AccessCache
from scopegate.services.agent_tokens import AgentTokenAuthenticator, deny_ttl_seconds
from scopegate.services.approval_hint import AgentApprovalHint
from scopegate.services.authentication import AuthenticatorChain, StoredTokenAuthenticator
from scopegate.services.change_feed import ChangeFeed
from scopegate.services.deny_list import DenyList
from scopegate.services.gate import Gate
from scopegate.services.grant_cache import GrantCache
from scopegate.services.keys import KeyRing
from scopegate.services.last_used import LastUsed
from scopegate.services.login_throttle import Budgets, LoginThrottle
from scopegate.services.metrics import flush_tallies
from scopegate.services.oauth import purge as oauth_purge
from scopegate.services.oauth import tokens as oauth_tokens
from scopegate.services.oauth.metadata_documents import MetadataDocuments
from scopegate.services.oauth.server import ServerContext
from scopegate.services.rate_limiter import RateLimiter
from scopegate.services.scope_usage import ScopeUsageRecorder
from scopegate.settings import Settings
from scopegate.store.bus import Bus, NullBus, RedisBus
from scopegate.store.counters import Counters, MemoryCounters, RedisCounters
from scopegate.store.db import autocommit, make_engine, make_loop_reader, make_sessionmaker
from scopegate.store.models import AuditEvent
from scopegate.store.outbox import deliver_after_commit
from scopegate.store.sqlite_writers import SQLiteWriters, write_turn

log = logging.getLogger("scopegate.runtime")
#: Connections kept for background work (key ring reloads, the upkeep thread, denials).
BACKGROUND_CONNECTIONS = 4
#: How often noted last-used times are written.
LAST_USED_FLUSH_SECONDS = 10.0
#: How often counted scope usage is written (a crash loses at most this much).
USAGE_FLUSH_SECONDS = 5.0
#: How often expired OAuth codes, tokens and unused registrations are deleted.
OAUTH_PURGE_SECONDS = 600.0


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    #: Sessions for work that may write; their committed changes reach ``feed`` and ``bus``.
    factory: sessionmaker[Session]
    #: ``engine`` for read-only work: autocommit (``store.db.autocommit``), so a
    #: single-statement read is one round trip.
    reader: Engine
    #: Sessions for read-only work, on ``reader``.
    read_factory: sessionmaker[Session]
    feed: ChangeFeed
    bus: Bus
    keys: KeyRing
    deny_list: DenyList
    grant_cache: GrantCache
    agent_tokens: AgentTokenAuthenticator
    gate: Gate
    last_used: LastUsed
    #: Admitted calls counted per credential, endpoint and day; ``None`` when
    #: ``scope_usage_enabled`` is off.
    scope_usage: ScopeUsageRecorder | None
    login_throttle: LoginThrottle
    #: Windowed counters (Redis when configured): login failures, device user-code tries.
    counters: Counters
    #: The rate limits of logins, token creation, mints, approvals, OAuth, webhooks
    #: (over ``counters``: shared by every process when Redis is configured).
    rate_limiter: RateLimiter
    #: What the OAuth server needs beside a session (settings, client metadata documents).
    oauth: ServerContext
    #: Group commits of audit rows that are a request's only write (mints).
    audit_batches: AuditBatches
    #: SQLite only: the queue this process's writers wait in (``store/sqlite_writers.py``).
    sqlite_writers: SQLiteWriters | None = None
    #: Reads run on the event loop, not in a worker thread: an embedded SQLite database
    #: (no network round trip to wait on). PostgreSQL reads hop to a thread, except the
    #: Core-only ones ``loop_reader`` awaits.
    reads_inline: bool = False
    #: PostgreSQL: autocommit connections on the event loop for Core-only reads
    #: (``store.db.make_loop_reader``), while the app's lifespan runs; ``None``: those
    #: reads hop to a worker thread like the rest.
    loop_reader: AsyncEngine | None = None
    #: SQLite: one autocommit connection of ``reader`` held for the event loop's inline
    #: reads while the app's lifespan runs (a checkout and a return per request cost about
    #: a tenth of a warm read); see ``loop_connection_here``.
    loop_connection: Connection | None = None
    _loop_thread: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _upkeep: threading.Thread | None = None

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(
            settings.database_url,
            pool_size=settings.worker_threads + BACKGROUND_CONNECTIONS,
            pool_timeout=settings.db_pool_timeout_seconds,
            sqlite_busy_timeout=settings.sqlite_busy_timeout_seconds,
        )
        factory = make_sessionmaker(engine)
        reader = autocommit(engine)
        feed = ChangeFeed(settings.cache_seconds)
        bus: Bus = RedisBus(settings.redis_url) if settings.redis_url else NullBus()
        last_used = LastUsed()
        keys = KeyRing(factory, settings.secret())
        deny_list = DenyList(feed, deny_ttl_seconds(settings))
        grant_cache = GrantCache(feed)
        agent_tokens = AgentTokenAuthenticator(settings, keys, deny_list, grant_cache, feed)
        chain = AuthenticatorChain([
            StoredTokenAuthenticator(TokenKind.USER, credentials.load_user_token, feed,
                                     last_used, credentials.token_hash),
            StoredTokenAuthenticator(TokenKind.ORG, credentials.load_org_token, feed,
                                     last_used, credentials.token_hash),
            StoredTokenAuthenticator(TokenKind.INTEGRATION, integrations.load_integration_token,
                                     feed, last_used, credentials.token_hash),
            StoredTokenAuthenticator(TokenKind.OAUTH_ACCESS, oauth_tokens.load_access_token,
                                     feed, last_used, oauth_tokens.token_hash),
            agent_tokens,
        ])
        reads_inline = engine.dialect.name == "sqlite"
        scope_usage = ScopeUsageRecorder() if settings.scope_usage_enabled else None
        gate = Gate(chain=chain, access=AccessCache(feed), feed=feed, reader=reader,
                    realm=settings.realm, resource=settings.api_resource,
                    hints=[AgentApprovalHint(settings.base_url)], inline=reads_inline,
                    usage=scope_usage)
        # Login failures are counted in Redis (shared by every process) when configured.
        counters: Counters = (RedisCounters(settings.redis_url) if settings.redis_url
                              else MemoryCounters())
        sqlite_writers = (SQLiteWriters(settings.sqlite_busy_timeout_seconds)
                          if engine.dialect.name == "sqlite" else None)
        runtime = cls(
            settings=settings, engine=engine, factory=factory, reader=reader,
            read_factory=make_sessionmaker(reader),
            feed=feed, bus=bus, keys=keys, deny_list=deny_list, grant_cache=grant_cache,
            agent_tokens=agent_tokens, gate=gate, last_used=last_used,
            scope_usage=scope_usage,
            login_throttle=LoginThrottle(counters, Budgets.from_settings(settings),
                                         settings.secret()),
            counters=counters,
            rate_limiter=RateLimiter.from_settings(counters, settings),
            oauth=ServerContext(settings, MetadataDocuments(
                allow_loopback=settings.oauth_metadata_allow_loopback,
                cache_seconds=settings.oauth_metadata_cache_seconds,
                ca_file=settings.oauth_metadata_ca_file), deny_list, chain),
            audit_batches=AuditBatches(factory, sqlite_writers),
            sqlite_writers=sqlite_writers,
            reads_inline=reads_inline,
        )
        deliver_after_commit(factory, runtime.announce)
        gate.loop_reader = runtime.loop_reader_here
        return runtime

    # -- changes -------------------------------------------------------------------------
    def announce(self, changes: Sequence[Change]) -> None:
        """After a commit: forget locally at once, then tell every other process."""
        self.feed.apply(changes)
        self.bus.publish(changes)

    # -- life ----------------------------------------------------------------------------
    def start(self) -> None:
        """Load what the request path needs and start the background work. Blocking:
        call it from a thread (the lifespan does) or before serving. Idempotent."""
        if self._upkeep is not None:
            return
        try:
            self.keys.load()
        except SQLAlchemyError as error:  # serve anyway; the ring reloads in the background
            log.error("could not load the signing keys: %s", type(error).__name__)
        self._confirm()
        self.bus.listen(self.feed.apply_one, self.feed.confirmed, self.feed.bus_gap)
        self._stop.clear()
        self._upkeep = threading.Thread(target=self._run_upkeep, name="scopegate-upkeep",
                                        daemon=True)
        self._upkeep.start()

    async def open_loop_readers(self) -> None:
        """In the running event loop (the lifespan's): make ``loop_reader`` (PostgreSQL)
        or check out ``loop_connection`` (SQLite). A second lifespan on this runtime in
        another thread's loop leaves them to the first and uses the pool."""
        if self._loop_thread is not None:
            return
        self._loop_thread = threading.get_ident()
        if self.reads_inline:
            self.loop_connection = self.reader.connect()
        else:
            self.loop_reader = make_loop_reader(
                self.settings.database_url, pool_size=self.settings.worker_threads,
                pool_timeout=self.settings.db_pool_timeout_seconds)

    async def close_loop_readers(self) -> None:
        """Give back what ``open_loop_readers`` took, in the loop it belongs to."""
        if self._loop_thread != threading.get_ident():
            return
        self.drop_loop_connection()
        reader, self.loop_reader = self.loop_reader, None
        self._loop_thread = None
        if reader is not None:
            await reader.dispose()

    def loop_connection_here(self) -> Connection | None:
        """``loop_connection`` when called on the thread whose loop holds it, else
        ``None``. An inline read runs to its end without yielding to the loop, so two
        never use it at once."""
        if self._loop_thread == threading.get_ident():
            return self.loop_connection
        return None

    def loop_reader_here(self) -> AsyncEngine | None:
        """``loop_reader`` when called in the loop that opened it (its connections
        belong to that loop), else ``None``."""
        if self._loop_thread == threading.get_ident():
            return self.loop_reader
        return None

    def drop_loop_connection(self) -> None:
        """Give ``loop_connection`` back (at the end of the lifespan, or when a failure
        left it unusable: inline reads then check connections out of the pool)."""
        conn, self.loop_connection = self.loop_connection, None
        if conn is not None:
            try:
                conn.close()
            except SQLAlchemyError as error:
                log.warning("could not close the loop's connection: %s", type(error).__name__)

    def stop(self) -> None:
        """Stop the background work, write what is pending, give connections back."""
        if self._upkeep is None:
            return
        self._stop.set()
        self._upkeep.join(timeout=5)
        self._upkeep = None
        self.bus.close()
        self._flush_last_used()
        self._flush_scope_usage()
        self.engine.dispose()

    def close(self) -> None:
        """Give everything back without starting (the CLI's runtime)."""
        self.stop()
        self.bus.close()
        self.engine.dispose()

    def size_thread_pool(self) -> None:
        """Run at most as many database threads as there are connections for them, so a
        thread never waits for a connection only another waiting thread could return."""
        anyio.to_thread.current_default_thread_limiter().total_tokens = (
            self.settings.worker_threads)

    def write_denials(self, events: list[AuditEvent]) -> None:
        """Write refusals' audit events in one transaction of their own (after a request)."""
        try:
            audit.write_events(self.factory, events)
        except SQLAlchemyError as error:
            log.error("could not write %d audit event(s): %s", len(events),
                      type(error).__name__)

    def confirm_changes(self) -> None:
        """Poll the change counters now (the upkeep thread does so twice per
        ``cache_seconds``): every change committed before this call is then applied."""
        self._confirm()

    def _confirm(self) -> None:
        try:
            with self.reader.connect() as conn:
                self.feed.poll(conn)
        except SQLAlchemyError as error:
            log.warning("could not read the change counters: %s", type(error).__name__)

    def _run_upkeep(self) -> None:
        interval = self.feed.cache_seconds / 2
        flushed_at = usage_at = purged_at = 0.0
        elapsed = 0.0
        while not self._stop.wait(interval):
            self._confirm()
            flush_tallies()  # the request path's counts, into the metrics (cheap)
            elapsed += interval
            if elapsed - flushed_at >= LAST_USED_FLUSH_SECONDS:
                flushed_at = elapsed
                self._flush_last_used()
            if elapsed - usage_at >= USAGE_FLUSH_SECONDS:
                usage_at = elapsed
                self._flush_scope_usage()
            if elapsed - purged_at >= OAUTH_PURGE_SECONDS:
                purged_at = elapsed
                self._purge_oauth()

    def _purge_oauth(self) -> None:
        try:
            with self.factory() as db, db.begin():
                oauth_purge.purge_expired(db)
                deploy_hook.purge_deliveries(db)
        except SQLAlchemyError as error:
            log.warning("could not purge expired OAuth rows and old deliveries: %s",
                        type(error).__name__)

    def flush_scope_usage(self) -> int:
        """Write the counted scope usage now (the upkeep thread does so every
        ``USAGE_FLUSH_SECONDS``, and ``stop`` once more); returns the keys written. On
        SQLite it takes the process's write turn like any writer."""
        if self.scope_usage is None:
            return 0
        with write_turn(self.sqlite_writers):
            return self.scope_usage.flush(self.factory)

    def _flush_scope_usage(self) -> None:
        try:
            self.flush_scope_usage()
        except SQLAlchemyError as error:  # the counts are kept for the next try
            log.warning("could not write scope usage: %s", type(error).__name__)

    def _flush_last_used(self) -> None:
        try:
            self.last_used.flush(self.factory)
        except SQLAlchemyError as error:
            log.warning("could not write last-used times: %s", type(error).__name__)
