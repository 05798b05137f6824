"""``scopegate audit``: scope usage and recommendations (a fixed public interface).

``scopegate audit scopes [--org SLUG] [--days N] [--json]`` prints, per credential, the
scopes it holds, those that admitted a call in the last N days, the unused ones, and the
least powerful set that would have admitted every call: a table, or with ``--json`` the
API's document (``GET /api/0/organizations/{org}/scope-usage/``) for all the
organizations asked for.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scopegate.cli.units import unit
from scopegate.core import scopes as registry
from scopegate.services import directory, scope_usage_report
from scopegate.services.scope_usage_report import CredentialUsage
from scopegate.web.api import declarations
from scopegate.web.api.scope_usage import DEFAULT_DAYS, CredentialUsageOut, ScopeUsageOut

audit_app = typer.Typer(help="Audit: scope usage.", no_args_is_help=True)


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
