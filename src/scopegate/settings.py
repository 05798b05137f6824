"""Settings: the one settings object, read from ``SCOPEGATE_*`` environment variables."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scopegate.core.rate_limits import LIMIT_PATTERN

MAX_AGENT_TOKEN_TTL = 3600
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
#: A rate limit's written form, "N/S" (the bounds: ``core.rate_limits.RateLimit``).
_RATE_LIMIT = LIMIT_PATTERN


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCOPEGATE_", extra="ignore")

    #: SQLAlchemy URL. Default: a SQLite file in the working directory.
    database_url: str = "sqlite:///./scopegate.db"
    #: Optional Redis URL for the KV store (deny list, caches). Default: KV in SQL.
    redis_url: str | None = None
    #: Signs cookies and state, and derives the key that encrypts signing keys at rest.
    #: Generated on first start and stored in ``secret_key_file`` when not given.
    secret_key: SecretStr | None = None
    secret_key_file: Path = Path(".scopegate-secret")
    #: Public base URL: issuer of agent tokens, links in challenges, cookie ``Secure`` flag.
    base_url: str = "http://127.0.0.1:8000"
    #: Realm in ``WWW-Authenticate`` challenges.
    realm: str = "scopegate"
    #: Extra ``Host`` header values accepted besides the base URL's host, comma-separated
    #: (e.g. ``"api.example.com,*.example.com"``). Requests for any other host get 400.
    allowed_hosts: str = ""
    #: Proxies whose ``X-Forwarded-For``/``X-Forwarded-Proto`` headers are believed,
    #: comma-separated addresses or networks (``"10.0.0.5,10.1.0.0/16"``). Default: none,
    #: so the client address is always the TCP peer.
    trusted_proxies: str = ""

    #: Login throttling: failed logins counted in fixed windows of ``login_window_seconds``.
    login_window_seconds: int = Field(default=900, ge=10, le=24 * 3600)
    #: Failures allowed for one account from one client address per window.
    login_failures_per_account_address: int = Field(default=5, ge=1, le=10_000)
    #: Failures allowed for one account from all addresses per window (a browser that
    #: logged in to that account before is exempt: see ``docs/architecture.md``).
    login_failures_per_account: int = Field(default=20, ge=1, le=100_000)
    #: Failures allowed from one client address, all accounts, per window.
    login_failures_per_address: int = Field(default=50, ge=1, le=100_000)

    # -- Rate limits (services/rate_limiter.py) -----------------------------------------
    #: Each limit is "N/S": N requests per fixed window of S seconds (1 ≤ N ≤ 1,000,000,
    #: 1 ≤ S ≤ 86,400), counted per client address (an IPv6 /64) and per account where
    #: one is known; a spent window answers 429 with ``Retry-After``. Counted in Redis
    #: when ``redis_url`` is set (shared by every process), else in this process.
    #: Off: nothing is counted (the login failure budgets above still apply).
    rate_limits_enabled: bool = True
    #: ``POST /login``: per address and per email (per email and browser once that
    #: browser logged in to it, so others cannot spend its owner's budget).
    rate_limit_login: str = Field(default="30/60", pattern=_RATE_LIMIT)
    #: Creating user, org and integration tokens (API and pages): per address and user.
    rate_limit_token_create: str = Field(default="30/60", pattern=_RATE_LIMIT)
    #: Minting agent tokens: per address and parent credential.
    rate_limit_agent_mint: str = Field(default="300/60", pattern=_RATE_LIMIT)
    #: Approving or denying agent writes (API and page): per address and person.
    rate_limit_approval: str = Field(default="60/60", pattern=_RATE_LIMIT)
    #: ``POST /oauth/token``: per address, and per client_id for tokens issued.
    rate_limit_oauth_token: str = Field(default="120/60", pattern=_RATE_LIMIT)
    #: ``POST /oauth/register`` (dynamic client registration): per address.
    rate_limit_client_registration: str = Field(default="30/600", pattern=_RATE_LIMIT)
    #: Device codes: ``POST /oauth/device_authorization`` per address; user codes typed
    #: at ``/oauth/device`` per address and person.
    rate_limit_device_code: str = Field(default="30/60", pattern=_RATE_LIMIT)
    #: Webhook deliveries: per address, and per installation once a delivery is signed.
    rate_limit_webhook: str = Field(default="60/60", pattern=_RATE_LIMIT)

    #: Longest wait for a database connection from the pool before answering 503.
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: Longest wait for SQLite's write lock before answering 503.
    sqlite_busy_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    #: Agent capability tokens.
    agent_token_ttl_seconds: int = Field(default=300, ge=30, le=MAX_AGENT_TOKEN_TTL)
    agent_token_max_ttl_seconds: int = Field(default=3600, ge=60, le=MAX_AGENT_TOKEN_TTL)
    #: The staleness bound of every in-process cache of the request path (credentials,
    #: roles, organizations, agent claims, the deny list, grants): a change made in
    #: another process takes effect here within this many seconds (well under one with
    #: Redis, which pushes changes), and cached answers are not trusted past it when
    #: neither Redis nor the database can confirm them.
    cache_seconds: float = Field(default=2.0, gt=0, le=5)
    #: Threads that run database work; the pool holds as many connections, plus a few
    #: for background work.
    worker_threads: int = Field(default=16, ge=1, le=256)

    #: Count, per credential, endpoint and UTC day, which scope admitted each call (the
    #: scope-usage report and its recommendations): in memory on the request path,
    #: written every few seconds. Off: nothing is counted.
    scope_usage_enabled: bool = True

    session_max_age_seconds: int = Field(default=12 * 3600, ge=300)
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    log_level: str = "INFO"
    #: ``json``: one JSON object per log line (time, level, logger, message, request id,
    #: extras), the access log included; ``text``: uvicorn's plain lines.
    log_format: Literal["json", "text"] = "json"
    #: When set, ``GET /metrics`` takes this bearer token (Prometheus'
    #: ``authorization``); unset, it is open: keep it off the public listener.
    metrics_token: SecretStr | None = None

    # -- OAuth 2.1 authorization server (services/oauth/) ------------------------------
    #: Lifetime of an OAuth access token (``sgp_``).
    oauth_access_token_seconds: int = Field(default=3600, ge=60, le=24 * 3600)
    #: Lifetime of a refresh token (``sgr_``); each use rotates it.
    oauth_refresh_token_seconds: int = Field(default=30 * 24 * 3600, ge=300,
                                             le=365 * 24 * 3600)
    #: Lifetime of an authorization code (RFC 9700: short; at most 60 s here).
    oauth_code_seconds: int = Field(default=60, ge=5, le=60)
    #: Lifetime of a device code and its user code (RFC 8628).
    oauth_device_code_seconds: int = Field(default=600, ge=60, le=3600)
    #: Least seconds between two polls of the token endpoint for one device code.
    oauth_device_interval_seconds: int = Field(default=5, ge=1, le=60)
    #: A dynamically registered client that completes no authorization within this many
    #: seconds is deleted.
    oauth_unused_registration_seconds: int = Field(default=24 * 3600, ge=60)
    #: How long a fetched client metadata document is trusted before it is fetched again.
    oauth_metadata_cache_seconds: int = Field(default=300, ge=0, le=24 * 3600)
    #: Let a client ID metadata document live at a loopback ``http://`` URL. For
    #: development and tests only; off by default.
    oauth_metadata_allow_loopback: bool = False
    #: An extra CA bundle (PEM) trusted when fetching client metadata documents, besides
    #: the public roots: for clients that publish them behind an internal CA.
    oauth_metadata_ca_file: Path | None = None

    #: The API the MCP tools call over HTTP. Default: this deployment's own API
    #: (``<base>/api/0/``); in proxy mode, ``upstream_api_url``.
    mcp_api_url: str | None = None
    #: Hosts a tool's ``regionUrl`` may name besides the API URL's own host,
    #: comma-separated (``"us.example.com,de.example.com"``). https only, default port.
    mcp_region_hosts: str = ""
    #: Hold the ``Mcp-Session-Id`` sessions of 2025-protocol MCP clients in this
    #: process's memory, so those that declared URL elicitation approve writes inside the
    #: chat (``elicitation/create``). A single process only: no other process knows the
    #: session. Off (default): every MCP request is self-contained and any process serves
    #: it; such clients get the approval URL in a tool error and retry.
    mcp_process_sessions: bool = False
    #: Proxy mode (all four, or none): the upstream OAuth 2.1 authorization server this
    #: deployment is a client of, its client credentials there, and its API. Set, the
    #: ``/oauth/*`` endpoints speak to MCP clients as a proxy: people sign in upstream.
    upstream_issuer: str | None = None
    upstream_client_id: str | None = None
    upstream_client_secret: SecretStr | None = None
    upstream_api_url: str | None = None
    #: Browser origins allowed to call the OAuth endpoints and ``/mcp`` (CORS),
    #: comma-separated. Default: none.
    mcp_cors_origins: str = ""

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
            raise ValueError("log_level: one of CRITICAL, ERROR, WARNING, INFO, DEBUG")
        return value.upper()

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _upstream_all_or_none(self) -> Settings:
        given = [self.upstream_issuer, self.upstream_client_id, self.upstream_client_secret,
                 self.upstream_api_url]
        if any(v is not None for v in given) and not all(v is not None for v in given):
            raise ValueError("proxy mode needs all of SCOPEGATE_UPSTREAM_ISSUER, "
                             "_CLIENT_ID, _CLIENT_SECRET and _API_URL")
        return self

    @property
    def proxy_mode(self) -> bool:
        """Whether ``/oauth/*`` fronts an upstream authorization server (proxy mode)."""
        return self.upstream_issuer is not None

    @model_validator(mode="after")
    def _ttl_within_max(self) -> Settings:
        if self.agent_token_ttl_seconds > self.agent_token_max_ttl_seconds:
            raise ValueError("agent_token_ttl_seconds must not exceed agent_token_max_ttl_seconds")
        return self

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def api_resource(self) -> str:
        """The API as an OAuth resource (RFC 8707): the default audience of a token."""
        return self.base_url + "/api/0/"

    @property
    def mcp_resource(self) -> str:
        """The MCP endpoint as an OAuth resource: the audience of tokens MCP clients get."""
        return self.base_url + "/mcp"

    @property
    def mcp_api(self) -> str:
        """The API base URL the MCP tools call, ending in ``/``."""
        url = self.mcp_api_url or self.upstream_api_url or self.api_resource
        return url if url.endswith("/") else url + "/"

    @property
    def mcp_region_host_list(self) -> tuple[str, ...]:
        return tuple(h.lower() for h in _comma_list(self.mcp_region_hosts))

    @property
    def mcp_cors_origin_list(self) -> tuple[str, ...]:
        return tuple(o.rstrip("/") for o in _comma_list(self.mcp_cors_origins))

    @property
    def trusted_hosts(self) -> list[str]:
        """Host names the server answers for: the base URL's, loopback aliases when the
        base URL is on loopback, and ``allowed_hosts``."""
        host = urlsplit(self.base_url).hostname or ""
        hosts = [host]
        if host in LOOPBACK_NAMES:
            hosts += [name for name in LOOPBACK_NAMES if name != host]
        hosts += _comma_list(self.allowed_hosts)
        return hosts

    @property
    def trusted_proxy_list(self) -> list[str]:
        return _comma_list(self.trusted_proxies)

    def secret(self) -> str:
        """The server secret: configured, or read from / created in ``secret_key_file``."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.secret_key_file
        if path.exists():
            return path.read_text().strip()
        value = secrets.token_urlsafe(48)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use its secret
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        return value


def _comma_list(value: str) -> list[str]:
    """A comma-separated setting's items, stripped, empty ones dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
