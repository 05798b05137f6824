"""Scope usage: ``/api/0/organizations/{org}/scope-usage/``."""

from __future__ import annotations

from fastapi import APIRouter

from scopegate.web.transactions import TransactionalRoute

router = APIRouter(route_class=TransactionalRoute, tags=["scope usage"])
