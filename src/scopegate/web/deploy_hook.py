"""The built-in deploy hook's webhook: ``POST /integrations/deploy-hook/{installation}/webhook``.

Signature-authenticated, not bearer: the installation's webhook secret signs the raw
body (``services/deploy_hook.py``). In order, and writing nothing until the delivery is
known to be signed, fresh and well formed: read the body (bounded), find the
installation, check the signature and its timestamp, validate the JSON, map project and
environment to a kept token, claim the delivery id; then create the release by calling
the public releases API over HTTP with the environment's token, as any CI would. A call
that fails gives the delivery id back, so the sender's retry can succeed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import quote

import anyio
import httpx
from fastapi import APIRouter, FastAPI, Header
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from scopegate.core.rate_limits import RateLimitedAction
from scopegate.services import deploy_hook
from scopegate.services.errors import Invalid, ServiceError
from scopegate.services.sealed_secrets import Sealer
from scopegate.settings import Settings
from scopegate.store.integration_models import DELIVERY_ID_MAX
from scopegate.store.models import NAME_MAX, SLUG_MAX, VERSION_MAX
from scopegate.web.rate_limits import limit_async
from scopegate.web.runtime import runtime
from scopegate.web.transactions import TransactionalRoute, unit_of_work

log = logging.getLogger("scopegate.deploy_hook")

WEBHOOK_PATH = "/integrations/deploy-hook/{installation}/webhook"
#: Largest delivery accepted; a deployment event is a few hundred bytes.
MAX_BODY_BYTES = 16 * 1024
SIGNATURE_HEADER_MAX = 512
TIMEOUT_SECONDS = 10.0
_STATE = "deploy_hook"


class TooLarge(ServiceError):
    status = 413


class BadGateway(ServiceError):
    """The releases API could not be reached or did not take the release."""

    status = 502


class Deployment(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    id: str = Field(min_length=1, max_length=DELIVERY_ID_MAX)
    sha: str = Field(pattern=r"^[0-9a-fA-F]{7,64}$")
    #: The release's version; the commit ``sha`` when not given.
    version: str | None = Field(default=None, min_length=1, max_length=VERSION_MAX,
                                pattern=r"^[^/\s][^/\n\r\t]*$")
    environment: str = Field(min_length=1, max_length=NAME_MAX)
    project: str = Field(min_length=1, max_length=SLUG_MAX)


class DeploymentEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["deployment.succeeded"]
    deployment: Deployment


class ReleaseAnswer(BaseModel):
    release: str


def _body_schema() -> dict[str, Any]:
    """The event's JSON Schema with the deployment inlined (no ``$defs`` to resolve)."""
    schema = DeploymentEvent.model_json_schema()
    schema.pop("$defs", None)
    schema["properties"]["deployment"] = Deployment.model_json_schema()
    return schema


# -- the process's HTTP client ---------------------------------------------------------

class HookResources:
    """The app's sealer and its HTTP client for the releases API, made on first use.

    The client belongs to the event loop it was made on: a request on another loop (a
    test client started afresh) gets a client of its own."""

    def __init__(self, settings: Settings) -> None:
        self.sealer = Sealer(settings.secret())
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            self._http = httpx.AsyncClient(trust_env=False, follow_redirects=False,
                                           timeout=TIMEOUT_SECONDS)
            self._loop = loop
        return self._http

    async def aclose(self) -> None:
        if self._http is not None and self._loop is asyncio.get_running_loop():
            await self._http.aclose()
        self._http = None


def resources(request: Request) -> HookResources:
    found = getattr(request.app.state, _STATE, None)
    if found is None:
        found = HookResources(runtime(request).settings)
        setattr(request.app.state, _STATE, found)
    return found


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Close the HTTP client with the app (included routers' lifespans run in the app's)."""
    try:
        yield
    finally:
        found = getattr(app.state, _STATE, None)
        if found is not None:
            await found.aclose()


router = APIRouter(route_class=TransactionalRoute, tags=["deploy hook"], lifespan=_lifespan)


def api_base(settings: Settings) -> str:
    """This deployment's API, where the hook's tokens are valid: ``mcp_api`` (which an
    operator may point at an internal address), except in proxy mode, where that is the
    upstream's API and the hook's tokens mean nothing."""
    return settings.api_resource if settings.proxy_mode else settings.mcp_api


# -- the webhook -----------------------------------------------------------------------

async def _bounded_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise TooLarge("request body too large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise TooLarge("request body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> Deployment:
    try:
        return DeploymentEvent.model_validate_json(body).deployment
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            raise Invalid("the body is not JSON") from None
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body"
                         for e in error.errors()[:20]})
        raise Invalid("invalid delivery: " + ", ".join(fields)) from None


async def _create_release(http: httpx.AsyncClient, api: str, org_slug: str, token: str,
                          payload: dict[str, Any]) -> bool:
    """POST the release as the environment's token; True if made now, False if a
    release of this version existed (409)."""
    url = f"{api}organizations/{quote(org_slug, safe='')}/releases/"
    try:
        async with http.stream("POST", url, json=payload, headers={
                "Authorization": f"Bearer {token}", "Accept": "application/json"}) as answer:
            status = answer.status_code  # the body is not needed, so never read
    except httpx.HTTPError as error:
        log.warning("deploy hook: the releases API could not be reached: %s",
                    type(error).__name__)
        raise BadGateway("the releases API could not be reached") from None
    if status == 201:
        return True
    if status == 409:
        return False
    log.warning("deploy hook: the releases API answered %d", status)
    raise BadGateway(f"the releases API answered {status}")


@router.post(
    WEBHOOK_PATH,
    status_code=201,
    response_model=ReleaseAnswer,
    summary="Deploy hook: a deployment succeeded",
    description=(
        "Creates a release (the deployment's version, else its commit sha) for the "
        "installation's project, through the releases API with the environment's org:ci "
        "token. Authenticated by the signature, not a bearer token. 201: created; 200: "
        "the deployment's release existed."),
    responses={200: {"model": ReleaseAnswer, "description": "The release existed."},
               403: {"description": "Bad signature, or timestamp outside 5 minutes."},
               404: {"description": "Unknown installation."},
               409: {"description": "The delivery id was used before."},
               413: {"description": "Body over 16 KiB."},
               422: {"description": "Project or environment not mapped."},
               429: {"description": "Rate limited: retry after Retry-After seconds."},
               502: {"description": "The releases API failed; retry the delivery."},
               503: {"description": "Unavailable: retry after Retry-After seconds."}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": _body_schema()}}}},
)
async def deploy_hook_webhook(
    request: Request,
    installation: str,
    x_scopegate_signature: str = Header(
        min_length=1, max_length=SIGNATURE_HEADER_MAX,
        description='"t=<unix seconds>,v1=<hex HMAC-SHA256 of \\"<t>.<raw body>\\" keyed '
                    'with the webhook secret>"'),
    x_scopegate_delivery: str = Header(
        min_length=1, max_length=DELIVERY_ID_MAX, pattern=r"^[\x21-\x7e]+$",
        description="The delivery's id: each is accepted once."),
) -> JSONResponse:
    rt = runtime(request)
    hook = resources(request)
    await limit_async(request, RateLimitedAction.WEBHOOK)
    body = await _bounded_body(request)
    target = await unit_of_work(
        rt, lambda db: deploy_hook.load_target(db, installation, hook.sealer), writes=False)
    deploy_hook.verify_signature(target.webhook_secret, x_scopegate_signature, body,
                                 time.time())
    # Per installation only once signed: naming an installation spends none of its budget.
    await limit_async(request, RateLimitedAction.WEBHOOK, by_address=False,
                      account=f"installation:{target.installation_id}")
    deployment = _parse(body)
    token = deploy_hook.token_for(target, hook.sealer, deployment.project,
                                  deployment.environment)
    claim = await unit_of_work(rt, lambda db: deploy_hook.claim_delivery(
        db, target.installation_id, x_scopegate_delivery, deployment.id), writes=True)
    if claim.release is not None:
        return JSONResponse({"release": claim.release}, status_code=200)
    version = deployment.version or deployment.sha
    payload = {"version": version, "projects": [target.project_slug], "ref": deployment.sha}
    try:
        created = await _create_release(hook.http(), api_base(rt.settings), target.org_slug,
                                        token, payload)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await unit_of_work(rt, lambda db: deploy_hook.release_claim(db, claim.row_id),
                               writes=True)
        raise
    await unit_of_work(rt, lambda db: deploy_hook.record_release(db, claim.row_id, version),
                       writes=True)
    return JSONResponse({"release": version}, status_code=201 if created else 200)
