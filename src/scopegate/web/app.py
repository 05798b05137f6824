"""The FastAPI application: API under ``/api/0/``, pages, JWKS, OpenAPI.

``create_app`` builds the app around one ``Runtime`` (``runtime/process.py``) and never
writes: the database must have been prepared (``scopegate migrate``, or ``scopegate
serve``, which prepares it under a lock before its workers start). The lifespan starts
and stops what the runtime runs in the background.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from scopegate import __version__
from scopegate.runtime.process import Runtime
from scopegate.settings import Settings, get_settings
from scopegate.web import deploy_hook, errors, health, jwks, rate_limits
from scopegate.web.api.declarations import api_routers
from scopegate.web.auth import app_guard
from scopegate.web.body_limit import BodyLimitMiddleware
from scopegate.web.cookies import SessionCookie
from scopegate.web.cors import OAuthCorsMiddleware
from scopegate.web.mcp import resource_metadata
from scopegate.web.mcp.endpoint import MCP_PATH
from scopegate.web.mcp.front_door import FrontDoor
from scopegate.web.oauth import authorize, deny_list_feed, device_page, proxy_pages
from scopegate.web.oauth import endpoints as oauth_endpoints
from scopegate.web.origin import CanonicalOriginMiddleware, host_patterns
from scopegate.web.request_record import observe
from scopegate.web.security_headers import SecurityHeadersMiddleware
from scopegate.web.ui import approvals, apps, pages
from scopegate.web.ui import integrations as integration_pages
from scopegate.web.ui import scope_usage as scope_usage_pages
from scopegate.web.ui.rendering import STATIC_DIR

API_PREFIX = "/api/0"


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the app on ``runtime`` (built from ``settings`` when not given)."""
    settings = runtime.settings if runtime is not None else settings or get_settings()
    logging.getLogger("scopegate").setLevel(settings.log_level)
    rt = runtime or Runtime.build(settings)
    front_door = FrontDoor(rt)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        rt.size_thread_pool()
        await run_in_threadpool(rt.start)
        await rt.open_loop_readers()
        try:
            async with front_door.running():
                yield
        finally:
            await rt.close_loop_readers()
            await run_in_threadpool(rt.stop)

    app = FastAPI(
        title="scopegate",
        version=__version__,
        description="Least-privilege credentials for APIs that AI agents act on.",
        # Swagger UI and ReDoc need inline script and a CDN, which the pages' Content
        # Security Policy forbids; the OpenAPI document stays at /openapi.json.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = rt
    app.state.front_door = front_door
    app.state.session_cookie = SessionCookie(settings)
    app_guard(rt, app.state.session_cookie).install(app)
    errors.install(app)
    # First: the route noter must be the innermost middleware; the request id and the
    # request record go outside everything (see web/request_record.py).
    observe(app)
    health.install(app, rt)
    rate_limits.install(app)
    for router in api_routers():
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(jwks.router)
    app.include_router(oauth_endpoints.router)
    app.include_router(deny_list_feed.router)
    app.include_router(authorize.router)
    app.include_router(proxy_pages.router)
    app.include_router(device_page.router)
    app.include_router(pages.router)
    app.include_router(approvals.router)
    app.include_router(apps.router)
    app.include_router(integration_pages.router)
    app.include_router(scope_usage_pages.router)
    app.include_router(deploy_hook.router)
    app.include_router(resource_metadata.router)
    app.router.routes.append(Route(MCP_PATH, endpoint=front_door.endpoint,
                                   methods=["GET", "POST", "DELETE"]))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(OAuthCorsMiddleware, origins=settings.mcp_cors_origin_list)
    # Outermost last: the security headers on every response, refusals included; then a
    # request for another Host is refused (400); then the rest sees only the base URL's.
    app.add_middleware(CanonicalOriginMiddleware, base_url=settings.base_url)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=host_patterns(settings.trusted_hosts),
                       www_redirect=False)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
