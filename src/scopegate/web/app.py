"""The FastAPI application: API under ``/api/0/``, pages, JWKS, OpenAPI."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.staticfiles import StaticFiles

from scopegate import __version__
from scopegate.core.token_kinds import TokenKind
from scopegate.services.agent_tokens import AgentTokenAuthenticator
from scopegate.services.authentication import (
    Authenticator,
    AuthenticatorChain,
    default_authenticators,
)
from scopegate.services.deny_list import DenyList
from scopegate.services.grant_cache import GrantCache
from scopegate.services.keys import KeyRing
from scopegate.services.login_throttle import Budgets, LoginThrottle
from scopegate.settings import Settings, get_settings
from scopegate.store.counters import Counters, MemoryCounters, RedisCounters
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.kv import KV, SQLKV, RedisKV
from scopegate.store.migrate import upgrade
from scopegate.web import errors, jwks
from scopegate.web.agent_runtime import AgentRuntime, deny_ttl_seconds
from scopegate.web.api import agent, audit, issues, organizations, releases, tokens
from scopegate.web.body_limit import BodyLimitMiddleware
from scopegate.web.cookies import SessionCookie
from scopegate.web.origin import CanonicalOriginMiddleware, host_patterns
from scopegate.web.runtime import Runtime
from scopegate.web.security_headers import SecurityHeadersMiddleware
from scopegate.web.ui import approvals, pages
from scopegate.web.ui.rendering import STATIC_DIR

API_PREFIX = "/api/0"


def build_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    engine = make_engine(
        settings.database_url, pool_timeout=settings.db_pool_timeout_seconds,
        sqlite_busy_timeout=settings.sqlite_busy_timeout_seconds,
    )
    if migrate:
        upgrade(engine)
    factory = make_sessionmaker(engine)
    sql_kv = SQLKV(factory)
    kv: KV = RedisKV(settings.redis_url) if settings.redis_url else sql_kv
    # The deny list is kept in the database, and in Redis too (read first) when configured.
    deny_list = DenyList(sql_kv, kv if kv is not sql_kv else None,
                         settings.deny_list_cache_seconds, deny_ttl_seconds(settings))
    grant_cache = GrantCache(settings.deny_list_cache_seconds)
    keys = KeyRing(factory, settings.secret())
    keys.ensure_active()  # the first signing key, now, outside any request's transaction
    agent_authenticator = AgentTokenAuthenticator(settings, keys, deny_list, grant_cache)
    chain = AuthenticatorChain(
        [*default_authenticators(), Authenticator(TokenKind.AGENT, agent_authenticator)]
    )
    # Login failures are counted in Redis (shared by every process) when configured.
    counters: Counters = (RedisCounters(settings.redis_url) if settings.redis_url
                          else MemoryCounters())
    return Runtime(
        settings=settings,
        engine=engine,
        factory=factory,
        kv=kv,
        chain=chain,
        cookie=SessionCookie(settings),
        login_throttle=LoginThrottle(counters, Budgets.from_settings(settings),
                                     settings.secret()),
        extras={
            "agent": AgentRuntime(keys, deny_list, grant_cache, agent_authenticator),
            "on_insufficient_scope": agent.on_insufficient_scope,
        },
    )


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    """Build the app; migrates the database first unless ``migrate`` is false."""
    settings = settings or get_settings()
    logging.getLogger("scopegate").setLevel(settings.log_level)
    rt = build_runtime(settings, migrate=migrate)
    app = FastAPI(
        title="scopegate",
        version=__version__,
        description="Least-privilege credentials for APIs that AI agents act on.",
        # Swagger UI and ReDoc need inline script and a CDN, which the pages' Content
        # Security Policy forbids; the OpenAPI document stays at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = rt
    errors.install(app)
    for module in (organizations, issues, releases, tokens, agent, audit):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(jwks.router)
    app.include_router(pages.router)
    app.include_router(approvals.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Outermost last: the security headers on every response, refusals included; then a
    # request for another Host is refused (400); then the rest sees only the base URL's.
    app.add_middleware(CanonicalOriginMiddleware, base_url=settings.base_url)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=host_patterns(settings.trusted_hosts),
                       www_redirect=False)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
