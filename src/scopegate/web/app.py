"""The FastAPI application: API under ``/api/0/``, pages, JWKS, OpenAPI."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from scopegate import __version__
from scopegate.services.authentication import AuthenticatorChain, default_authenticators
from scopegate.settings import Settings, get_settings
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.kv import KV, SQLKV, RedisKV
from scopegate.store.migrate import upgrade
from scopegate.web import errors
from scopegate.web.api import issues, organizations, releases, tokens
from scopegate.web.body_limit import BodyLimitMiddleware
from scopegate.web.cookies import SessionCookie
from scopegate.web.runtime import Runtime
from scopegate.web.ui import pages
from scopegate.web.ui.rendering import STATIC_DIR

API_PREFIX = "/api/0"


def build_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    factory = make_sessionmaker(engine)
    kv: KV = RedisKV(settings.redis_url) if settings.redis_url else SQLKV(factory)
    return Runtime(
        settings=settings,
        engine=engine,
        factory=factory,
        kv=kv,
        chain=AuthenticatorChain(default_authenticators()),
        cookie=SessionCookie(settings),
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
    )
    app.state.runtime = rt
    errors.install(app)
    for module in (organizations, issues, releases, tokens):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app
