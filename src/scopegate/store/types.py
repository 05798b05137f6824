"""Column types shared by the models."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[object], datetime | None]:
        """One call per value: the dialect's own conversion (SQLite's string parser; none
        on PostgreSQL) and the zone together, where ``TypeDecorator`` nests two calls in a
        third (a page of 25 issues reads 50 datetimes)."""
        parse = self.impl_instance.dialect_impl(dialect).result_processor(dialect, coltype)

        def process(value: object) -> datetime | None:
            if parse is not None:
                value = parse(value)
            if value is None:
                return None
            return value.replace(tzinfo=UTC)  # type: ignore[attr-defined]

        return process


class ScopeSet(TypeDecorator[frozenset[str]]):
    """A set of scope strings, stored space-separated in registry order."""

    impl = String(1024)
    cache_ok = True

    def process_bind_param(self, value: frozenset[str] | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        from scopegate.core.scopes import format_scopes

        return format_scopes(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> frozenset[str] | None:
        if value is None:
            return None
        return frozenset(value.split())


def utcnow() -> datetime:
    return datetime.now(UTC)
