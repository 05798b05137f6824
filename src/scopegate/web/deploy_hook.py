"""The built-in deploy hook's webhook: ``POST /integrations/deploy-hook/{installation}/webhook``."""

from __future__ import annotations

from fastapi import APIRouter

from scopegate.web.transactions import TransactionalRoute

router = APIRouter(route_class=TransactionalRoute, tags=["deploy hook"])
