"""Integrations (an organization's own apps), their tokens, the built-in deploy hook's
installations and deliveries, and the per-day scope usage of every credential."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scopegate.store.models import NAME_MAX, SLUG_MAX, VERSION_MAX, Base, Organization
from scopegate.store.types import ScopeSet, UTCDateTime, utcnow

#: What kind of integration a row is: one an organization made, or a built-in one.
INTERNAL = "internal"
DEPLOY_HOOK = "deploy_hook"
INSTALLATION_ID_MAX = 32
DELIVERY_ID_MAX = 128
SUBJECT_MAX = 200
ENDPOINT_MAX = 256


class Integration(Base):
    """An integration: a named holder of scopes in one organization, with no person
    behind it. Its tokens act with exactly its current scopes."""

    __tablename__ = "integrations"
    __table_args__ = (UniqueConstraint("org_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(SLUG_MAX))
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    kind: Mapped[str] = mapped_column(String(16), default=INTERNAL)
    scopes: Mapped[frozenset[str]] = mapped_column(ScopeSet)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organization: Mapped[Organization] = relationship(lazy="joined")


class IntegrationToken(Base):
    """An ``sgi_`` token of an integration, stored by SHA-256. ``sealed_secret`` is set
    only for tokens an integration of scopegate's own keeps for its use (the deploy
    hook's, one per environment, named after it): encrypted, never shown."""

    __tablename__ = "integration_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(
        ForeignKey("integrations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_chars: Mapped[str] = mapped_column(String(4))
    sealed_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DeployHookInstallation(Base):
    """The deploy hook installed in an organization for one project. ``id`` is public
    (it is in the webhook URL); the webhook secret is kept encrypted."""

    __tablename__ = "deploy_hook_installations"

    id: Mapped[str] = mapped_column(String(INSTALLATION_ID_MAX), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"),
                                        index=True)
    integration_id: Mapped[int] = mapped_column(
        ForeignKey("integrations.id", ondelete="CASCADE"), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    webhook_secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeployHookDelivery(Base):
    """A webhook delivery the hook accepted: its id may not come again, and one
    deployment makes one release."""

    __tablename__ = "deploy_hook_deliveries"
    __table_args__ = (
        UniqueConstraint("installation_id", "delivery_id"),
        Index("ix_deploy_hook_deliveries_deployment", "installation_id", "deployment_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    installation_id: Mapped[str] = mapped_column(
        ForeignKey("deploy_hook_installations.id", ondelete="CASCADE"))
    delivery_id: Mapped[str] = mapped_column(String(DELIVERY_ID_MAX))
    deployment_id: Mapped[str] = mapped_column(String(DELIVERY_ID_MAX))
    release_version: Mapped[str | None] = mapped_column(String(VERSION_MAX), nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ScopeUsage(Base):
    """Per day: how often one credential called one endpoint with one method in one
    organization, and which of its scopes admitted the calls.

    ``subject`` names the credential (``core/scope_usage.py``); ``sufficient`` is what
    the endpoint accepted then, so a recommendation needs no route table of the past;
    ``granted`` is what the credential held at the latest call recorded."""

    __tablename__ = "scope_usage"
    __table_args__ = (
        UniqueConstraint("day", "org_id", "subject", "method", "endpoint", "admitted_by",
                         name="uq_scope_usage_call"),
        Index("ix_scope_usage_org_day", "org_id", "day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX))
    method: Mapped[str] = mapped_column(String(8))
    endpoint: Mapped[str] = mapped_column(String(ENDPOINT_MAX))
    admitted_by: Mapped[str] = mapped_column(String(32))
    sufficient: Mapped[frozenset[str]] = mapped_column(ScopeSet)
    granted: Mapped[frozenset[str]] = mapped_column(ScopeSet)
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
