"""A command's unit of work: a prepared database, one transaction, the server's Runtime."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.orm import Session

from scopegate.runtime.prepare import prepare
from scopegate.runtime.process import Runtime
from scopegate.services.errors import ServiceError
from scopegate.settings import Settings, get_settings

err = Console(stderr=True)


@contextmanager
def unit(settings: Settings | None = None) -> Iterator[tuple[Runtime, Session]]:
    """A session of a prepared database, in one transaction, on the same ``Runtime`` the
    server builds (so what a command changes is announced to running servers like any
    other change); service errors exit with code 1."""
    settings = settings or get_settings()
    prepare(settings)
    runtime = Runtime.build(settings)
    session = runtime.factory()
    try:
        yield runtime, session
        session.commit()
    except ServiceError as error:
        session.rollback()
        err.print(f"[red]error:[/red] {escape(error.detail)}")
        raise typer.Exit(1) from None
    finally:
        session.close()
        runtime.close()


@contextmanager
def store(settings: Settings | None = None) -> Iterator[Session]:
    """``unit``'s session alone."""
    with unit(settings) as (_, session):
        yield session


def echo_fields(fields: Mapping[str, object], as_json: bool = False) -> None:
    """What a command created, on stdout: one ``key=value`` per line, or one JSON object."""
    if as_json:
        typer.echo(json.dumps(fields))
        return
    for key, value in fields.items():
        typer.echo(f"{key}={value}")
