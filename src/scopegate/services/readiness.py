"""Whether this process can serve: the database answers, its schema is at the newest
migration, and Redis (when configured) answers a PING.

Each check is blocking I/O bounded by its own timeouts (psycopg's connect timeout,
Redis socket timeouts), and the caller bounds the whole again (``web/health.py``), so a
probe never hangs. A failure names the check and the error's type only: error texts can
carry a URL with its password.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from scopegate.store.migrate import alembic_config

#: Socket timeouts of the Redis client the probe uses.
REDIS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Check:
    """One check's answer: ``detail`` says why it failed (or what it found)."""

    name: str
    ok: bool
    detail: str
    milliseconds: float

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail, "ms": round(self.milliseconds, 1)}


def _timed(name: str, run: Any) -> Check:
    started = time.perf_counter()
    try:
        ok, detail = run()
    except Exception as error:  # any failure is "not ready", named by type only
        ok, detail = False, f"unreachable ({type(error).__name__})"
    return Check(name, ok, detail, (time.perf_counter() - started) * 1000)


class Readiness:
    """The readiness checks of one process (its engine; its Redis URL if any)."""

    def __init__(self, engine: Engine, redis_url: str | None) -> None:
        self._engine = engine
        self._redis_url = redis_url
        self._redis: Any = None

    @property
    def has_redis(self) -> bool:
        return self._redis_url is not None

    @cached_property
    def heads(self) -> frozenset[str]:
        """The migrations' head revision(s) this code ships."""
        return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())

    @cached_property
    def known(self) -> frozenset[str]:
        """Every revision this code ships."""
        script = ScriptDirectory.from_config(alembic_config())
        return frozenset(rev.revision for rev in script.walk_revisions())

    def database(self) -> list[Check]:
        """A round trip, then the stored revision against ``heads`` (one connection)."""
        found: dict[str, Any] = {}

        def round_trip() -> tuple[bool, str]:
            conn = self._engine.connect()
            found["conn"] = conn
            conn.execute(text("SELECT 1"))
            return True, "ok"

        checks = [_timed("database", round_trip)]
        conn = found.get("conn")
        try:
            if checks[0].ok and conn is not None:
                checks.append(_timed("migrations", lambda: self._at_head(conn)))
            else:
                checks.append(Check("migrations", False, "database unreachable", 0.0))
        finally:
            if conn is not None:
                conn.close()
        return checks

    def _at_head(self, conn: Any) -> tuple[bool, str]:
        current = frozenset(MigrationContext.configure(conn).get_current_heads())
        if current == self.heads:
            return True, ",".join(sorted(current))
        if current and not current & self.known:
            # A revision this code does not ship: a newer version migrated the database
            # during a rolling upgrade. Migrations add before they remove, so this
            # process still serves; refusing would take every old process out at once.
            return True, f"ahead: {','.join(sorted(current))} (a newer version migrated it)"
        return False, (f"behind: at {','.join(sorted(current)) or 'no revision'}, "
                       f"head is {','.join(sorted(self.heads))}: run `scopegate migrate`")

    def redis(self) -> Check | None:
        """PING Redis, or ``None`` when none is configured."""
        if self._redis_url is None:
            return None

        def ping() -> tuple[bool, str]:
            if self._redis is None:
                import redis

                self._redis = redis.Redis.from_url(
                    self._redis_url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                    socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
            self._redis.ping()
            return True, "ok"

        return _timed("redis", ping)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
