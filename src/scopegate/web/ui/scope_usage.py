"""The scope usage page: ``/organizations/{org}/scope-usage``."""

from __future__ import annotations

from fastapi import APIRouter

from scopegate.web.transactions import TransactionalRoute

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)
