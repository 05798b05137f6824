"""``scopegate audit``: scope usage and recommendations (a fixed public interface).

``scopegate audit scopes [--org SLUG] [--days N] [--json]`` prints, per credential, the
scopes it holds, those that admitted a call in the last N days, the unused ones, and the
least powerful set that would have admitted every call: a table, or with ``--json`` the
API's document (``GET /api/0/organizations/{org}/scope-usage/``) for all the
organizations asked for.

``scopegate audit verify [--org SLUG]`` checks the tamper-evident log: each organization's
hash chain end to end against its head. Exit 0 with a summary when every chain is
intact; exit 1 naming each broken chain's first broken link (seq, row id, why).

``scopegate audit export [--org SLUG] [--since T] [--output FILE]`` writes the events as
JSON Lines for a log pipeline (every stored field, seq, prev_hash and hash), streamed in
chain order; the count goes to stderr. ``T`` is an ISO 8601 date or time (UTC unless it
names its offset); anything else exits 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scopegate.cli.units import unit
from scopegate.core import scopes as registry
from scopegate.services import audit_chain, directory, scope_usage_report
from scopegate.services.scope_usage_report import CredentialUsage
from scopegate.web.api import declarations
from scopegate.web.api.scope_usage import DEFAULT_DAYS, CredentialUsageOut, ScopeUsageOut

audit_app = typer.Typer(help="Audit: scope usage; verify and export the audit log.",
                        no_args_is_help=True)
#: Exported events between two progress lines on stderr.
PROGRESS_EVERY = 10_000
SINCE_MAX = 64
ORG_OPTION = typer.Option("--org", help="One organization's slug (default: every chain).")


@audit_app.command("scopes")
def audit_scopes(
    org: Annotated[str | None, typer.Option(
        "--org", help="One organization's slug (default: every organization).")] = None,
    days: Annotated[int, typer.Option(
        min=1, max=scope_usage_report.MAX_DAYS, help="The window: the last N days (UTC).")
    ] = DEFAULT_DAYS,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Each credential's granted, used and unused scopes, and the recommended minimal set."""
    with unit() as (_, db):
        org_id = directory.get_org(db, org).id if org is not None else None
        since, until = scope_usage_report.window(days)
        rows = scope_usage_report.report(db, declarations.scope_power(), days=days,
                                         org_id=org_id, today=until)
    if as_json:
        document = ScopeUsageOut(days=days, since=since, until=until,
                                 credentials=[CredentialUsageOut.of(row) for row in rows])
        typer.echo(json.dumps(document.model_dump(mode="json", by_alias=True)))
        return
    Console().print(_table(rows, days, with_org=org is None))


def _table(rows: list[CredentialUsage], days: int, *, with_org: bool) -> Table:
    table = Table(title=f"Scope usage, last {days} days (UTC)", show_lines=True)
    if with_org:
        table.add_column("Org")
    for name in ("Credential", "Granted", "Used", "Unused"):
        table.add_column(name)
    table.add_column("Calls", justify="right")
    for name in ("Last call", "Recommended", "Advice"):
        table.add_column(name)
    for row in rows:
        cells = [f"{escape(row.name)}\n[dim]{escape(row.subject)}[/dim]",
                 _scopes(row.granted), _scopes(row.used), _scopes(row.unused),
                 str(row.calls), row.last_day.isoformat() if row.last_day else "—",
                 _scopes(row.recommended), escape(row.advice)]
        table.add_row(*([escape(row.org_slug)] if with_org else []), *cells)
    return table


def _scopes(scopes: frozenset[str]) -> str:
    return "\n".join(registry.ordered(scopes)) or "—"


@audit_app.command("verify")
def audit_verify(org: Annotated[str | None, ORG_OPTION] = None) -> None:
    """Check the audit log's hash chains; name the first broken link of each."""
    with unit() as (_, db):
        audit_chain.snapshot(db)
        chains = ([directory.get_org(db, org).id] if org is not None
                  else audit_chain.chains(db))
        reports = [audit_chain.verify_chain(db, chain) for chain in chains]
    broken = [report for report in reports if report.broken is not None]
    for report in reports:
        if report.broken is None:
            typer.echo(f"{report.name}: intact, {report.events} event(s)")
            continue
        link = report.broken
        row = f" (row id {link.id})" if link.id is not None else ""
        typer.echo(f"{report.name}: BROKEN at seq {link.seq}{row}: {link.reason} — "
                   f"{link.detail}")
    events = sum(report.events for report in reports)
    typer.echo(f"{len(reports)} chain(s), {events} event(s): "
               + (f"{len(broken)} broken" if broken else "all intact"))
    if broken:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    org: Annotated[str | None, ORG_OPTION] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only events at or after T (ISO 8601 date or time; UTC unless "
                        "an offset is given).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", dir_okay=False, help="Write here instead of stdout.")] = None,
) -> None:
    """Write audit events as JSON Lines (one event per line, with seq and hashes)."""
    moment = parse_since(since) if since is not None else None
    with unit() as (_, db):
        audit_chain.snapshot(db)
        chain = directory.get_org(db, org).id if org is not None else None
        if output is None:
            count = _write(audit_chain.export(db, chain=chain, since=moment), sys.stdout)
        else:
            with output.open("w", encoding="utf-8") as sink:
                count = _write(audit_chain.export(db, chain=chain, since=moment), sink)
    typer.echo(f"exported {count} event(s)" + (f" to {output}" if output else ""), err=True)


def parse_since(text: str) -> datetime:
    """``--since``: an ISO 8601 date or time; naive means UTC."""
    try:
        if len(text) > SINCE_MAX:
            raise ValueError
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            "expected an ISO 8601 date or time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z",
            param_hint="--since") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _write(records: Iterator[dict[str, object]], sink: TextIO) -> int:
    count = 0
    for record in records:
        sink.write(json.dumps(record, separators=(",", ":")) + "\n")
        count += 1
        if count % PROGRESS_EVERY == 0:
            typer.echo(f"… {count} event(s)", err=True)
    sink.flush()
    return count
