"""Settings: the one settings object, read from ``SCOPEGATE_*`` environment variables."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_AGENT_TOKEN_TTL = 3600


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

    #: Agent capability tokens.
    agent_token_ttl_seconds: int = Field(default=300, ge=30, le=MAX_AGENT_TOKEN_TTL)
    agent_token_max_ttl_seconds: int = Field(default=3600, ge=60, le=MAX_AGENT_TOKEN_TTL)
    #: How long the in-process deny-list cache may serve a stale answer.
    deny_list_cache_seconds: float = Field(default=2.0, ge=0, le=5)

    session_max_age_seconds: int = Field(default=12 * 3600, ge=300)
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    log_level: str = "INFO"

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

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


@lru_cache
def get_settings() -> Settings:
    return Settings()
