"""Test settings and the services the storage tests run on.

PostgreSQL comes from ``SCOPEGATE_TEST_DATABASE_URL`` (``.ci/run`` exports it) and Redis
from ``SCOPEGATE_TEST_REDIS_URL``. Without them a test skips with the reason, unless
``CI`` is set: under CI a missing service is a failure.
"""

from __future__ import annotations

import os

import pytest

from scopegate.settings import Settings

PG_URL = os.environ.get("SCOPEGATE_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("SCOPEGATE_TEST_REDIS_URL")
IN_CI = bool(os.environ.get("CI"))
PASSWORD = "correct horse battery"
SECRET = "test-secret-key-not-for-production-0123456789"
BASE_URL = "http://testserver"
#: The OAuth tests' base URL: Authlib accepts plain http only on loopback.
OAUTH_BASE_URL = "http://127.0.0.1"


def require_service(url: str | None, name: str, variable: str) -> str:
    """The service URL, or skip (outside CI) / fail (under CI) with the reason."""
    if url:
        return url
    message = f"{name} not configured: set {variable}"
    if IN_CI:
        pytest.fail(message + " (CI must run every storage test on PostgreSQL and Redis)")
    pytest.skip(message)


def make_settings(database_url: str, **overrides: object) -> Settings:
    """The settings every test app shares (test secret, ``BASE_URL``), plus ``overrides``."""
    values: dict[str, object] = {
        "database_url": database_url, "secret_key": SECRET, "base_url": BASE_URL, **overrides
    }
    return Settings(**values)

#: A Redis URL on a loopback port nothing listens on: every connection is refused at once.
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"
