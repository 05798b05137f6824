"""The integrations pages: ``/organizations/{org}/integrations`` and the permission
editor, ``/organizations/{org}/integrations/{slug}``."""

from __future__ import annotations

from fastapi import APIRouter

from scopegate.web.transactions import TransactionalRoute

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)
