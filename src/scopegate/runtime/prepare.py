"""Preparing a database: migrations, then the first signing key, under the start-up lock.

``scopegate migrate`` and ``scopegate serve`` run this before anything serves; the app
factory never writes. Idempotent: a prepared database is left as it is.
"""

from __future__ import annotations

from scopegate.services.keys import KeyRing
from scopegate.settings import Settings
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.locks import startup_lock
from scopegate.store.migrate import upgrade


def prepare(settings: Settings) -> None:
    engine = make_engine(settings.database_url, pool_size=2)  # the lock, and the work
    try:
        with startup_lock(engine):
            upgrade(engine)
            KeyRing(make_sessionmaker(engine), settings.secret()).ensure_active()
    finally:
        engine.dispose()
