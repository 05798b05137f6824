"""``GET /healthz``, ``GET /readyz`` and ``GET /metrics``: what a load balancer, an
orchestrator and Prometheus ask.

``/healthz`` is liveness: the process answers, nothing else is touched. ``/readyz``
checks the database (a round trip and the migration revision) and Redis, each bounded
by ``READY_TIMEOUT_SECONDS`` on a small thread limiter of its own (probes never queue
behind requests, nor pile up threads when a dependency hangs); 503 + ``Retry-After``
names what failed. ``/metrics`` is the Prometheus exposition, of every worker in
multiprocess mode; open unless ``SCOPEGATE_METRICS_TOKEN`` is set, then it takes that
bearer token (compared in constant time). None of the three is rate limited, needs a
session, or is in the OpenAPI document (they are not the API).
"""

from __future__ import annotations

import hmac
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scopegate.runtime.process import Runtime
from scopegate.services.metrics import exposition
from scopegate.services.readiness import Check, Readiness

#: Longest a readiness probe waits for its checks before answering 503.
READY_TIMEOUT_SECONDS = 3.0
#: What a 503 from ``/readyz`` tells the caller to wait.
RETRY_AFTER_SECONDS = 5
#: Threads the probes may use at once (a hung dependency holds at most these).
PROBE_THREADS = 2

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> JSONResponse:
    """Liveness: this process answers HTTP. Touches no dependency."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Readiness: database, migrations at head, Redis when configured."""
    readiness: Readiness = request.app.state.readiness
    limiter: anyio.CapacityLimiter = request.app.state.probe_limiter
    checks: list[Check] = []
    with anyio.move_on_after(READY_TIMEOUT_SECONDS):
        checks += await anyio.to_thread.run_sync(readiness.database, abandon_on_cancel=True,
                                                 limiter=limiter)
        redis = await anyio.to_thread.run_sync(readiness.redis, abandon_on_cancel=True,
                                               limiter=limiter)
        if redis is not None:
            checks.append(redis)
    expected = ["database", "migrations"] + (["redis"] if readiness.has_redis else [])
    answered = {check.name for check in checks}
    checks += [Check(name, False, f"no answer within {READY_TIMEOUT_SECONDS:g} s", 0.0)
               for name in expected if name not in answered]
    failed = [check.name for check in checks if not check.ok]
    body: dict[str, Any] = {"status": "unavailable" if failed else "ready",
                            "checks": {check.name: check.as_json() for check in checks}}
    if failed:
        body["failed"] = failed
        return JSONResponse(body, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return JSONResponse(body)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition."""
    token: str | None = request.app.state.metrics_token
    if token is not None and not _bearer_matches(request, token):
        return JSONResponse({"detail": "Authentication credentials were not provided."},
                            status_code=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    # Reading every worker's sample files is file I/O: off the event loop.
    payload, content_type = await anyio.to_thread.run_sync(
        exposition, limiter=request.app.state.probe_limiter)
    return Response(payload, media_type=content_type)


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode())


def install(app: FastAPI, runtime: Runtime) -> None:
    """Add the three routes, with what they need on ``app.state``."""
    settings = runtime.settings
    app.state.readiness = Readiness(runtime.engine, settings.redis_url)
    app.state.probe_limiter = anyio.CapacityLimiter(PROBE_THREADS)
    app.state.metrics_token = (settings.metrics_token.get_secret_value()
                               if settings.metrics_token is not None else None)
    app.include_router(router)
