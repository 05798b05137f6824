"""What one running app holds: settings, database, KV, authenticators, cookie signer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from scopegate.services.authentication import AuthenticatorChain
from scopegate.services.login_throttle import LoginThrottle
from scopegate.settings import Settings
from scopegate.store.kv import KV
from scopegate.web.cookies import SessionCookie


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    kv: KV
    chain: AuthenticatorChain
    cookie: SessionCookie
    login_throttle: LoginThrottle
    extras: dict[str, Any] = field(default_factory=dict)


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime
