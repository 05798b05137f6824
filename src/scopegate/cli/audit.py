"""``scopegate audit``: scope usage and recommendations."""

from __future__ import annotations

import typer

audit_app = typer.Typer(help="Audit: scope usage.", no_args_is_help=True)
