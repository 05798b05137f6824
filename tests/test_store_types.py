"""Column types read back what was written, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select

from scopegate.store.db import autocommit, make_engine
from scopegate.store.types import UTCDateTime


def test_a_utc_datetime_reads_back_aware_in_utc_and_none_as_none(database_url: str) -> None:
    """Written in any zone, read back as the same instant in UTC (SQLite keeps no zone;
    ``UTCDateTime.result_processor`` parses and zones each value in one call)."""
    table = Table("probe_utc_datetimes", MetaData(), Column("id", Integer, primary_key=True),
                  Column("at", UTCDateTime, nullable=True))
    written = datetime(2026, 12, 3, 10, 27, 24, 123456, tzinfo=timezone(timedelta(hours=2)))
    engine = make_engine(database_url)
    try:
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(insert(table), [{"id": 1, "at": written}, {"id": 2, "at": None},
                                         {"id": 3, "at": written.replace(microsecond=0)}])
        with autocommit(engine).connect() as conn:
            rows = dict(conn.execute(select(table.c.id, table.c.at)).all())
        assert rows[1] == written and rows[1].tzinfo is UTC
        assert rows[1].hour == 8 and rows[1].microsecond == 123456
        assert rows[2] is None
        assert rows[3] == written.replace(microsecond=0) and rows[3].tzinfo is UTC
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()


def test_a_utc_datetime_reads_other_spellings_of_sqlite_text(sqlite_url: str) -> None:
    """SQLite text other than SQLAlchemy's full spelling (a date alone, no seconds) reads
    as the same aware UTC datetime (a date alone by SQLAlchemy's own parser)."""
    table = Table("probe_utc_text", MetaData(), Column("id", Integer, primary_key=True),
                  Column("at", UTCDateTime, nullable=True))
    engine = make_engine(sqlite_url)
    try:
        table.create(engine)
        with engine.begin() as conn:
            for n, text in enumerate(["2026-12-03", "2026-12-03 10:27"]):
                conn.exec_driver_sql("INSERT INTO probe_utc_text (id, at) VALUES (?, ?)",
                                     (n, text))
        with engine.connect() as conn:
            rows = dict(conn.execute(select(table.c.id, table.c.at)).all())
        assert rows == {0: datetime(2026, 12, 3, tzinfo=UTC),
                        1: datetime(2026, 12, 3, 10, 27, tzinfo=UTC)}
        assert all(value.tzinfo is UTC for value in rows.values())
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()


def test_a_naive_datetime_is_refused_when_written(database_url: str) -> None:
    table = Table("probe_naive_datetimes", MetaData(), Column("at", UTCDateTime))
    engine = make_engine(database_url)
    try:
        table.create(engine)
        with pytest.raises(Exception, match="naive datetime"), engine.begin() as conn:
            conn.execute(insert(table), [{"at": datetime(2026, 1, 1)}])
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()
