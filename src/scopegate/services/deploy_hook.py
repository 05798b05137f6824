"""The built-in deploy hook: a webhook that turns a successful deployment into a release.

Installing it for a project provisions an integration of kind ``deploy_hook`` holding
exactly ``org:ci``, with one ``sgi_`` token per deployment environment. The hook keeps
those tokens (and the webhook secret) sealed (``services/sealed_secrets.py``), because
it presents them itself: a delivery becomes a call to the public releases API with the
environment's token, so ``org:ci`` is exercised the way any outside caller's is.

A delivery is signed (``X-Scopegate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>">``), fresh (within ``TOLERANCE_SECONDS``), and new: its delivery id is
claimed once per installation, and one deployment makes one release however often it
is delivered. The web layer (``web/deploy_hook.py``) does the HTTP; this module holds
what is decided and stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from scopegate.core import scopes as registry
from scopegate.services import audit, directory, integrations
from scopegate.services.errors import Conflict, Invalid, NotFound, ServiceError, Unavailable
from scopegate.services.sealed_secrets import SealBroken, Sealer
from scopegate.store.integration_models import (
    DEPLOY_HOOK,
    INSTALLATION_ID_MAX,
    DeployHookDelivery,
    DeployHookInstallation,
    Integration,
    IntegrationToken,
)
from scopegate.store.models import SLUG_MAX, Organization, Project
from scopegate.store.types import utcnow

#: What the hook's integration holds: creating and updating releases, nothing else.
HOOK_SCOPES = frozenset({registry.ORG_CI})
DEFAULT_ENVIRONMENTS = ("production", "preview")
MAX_ENVIRONMENTS = 20
ENVIRONMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: A delivery signed longer ago than this (or this far ahead) is refused.
TOLERANCE_SECONDS = 300
#: Deliveries older than this are forgotten: the timestamp window refuses them anyway.
DELIVERY_RETENTION = timedelta(days=1)
INSTALLATION_ID_RE = re.compile(r"dh_[A-Za-z0-9_-]{1,29}")
SIGNATURE_SCHEME = "v1"
_SIGNATURE_PARTS_MAX = 8
_HEX_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")


class SignatureRefused(ServiceError):
    """A wrong signature or a timestamp outside the window: not from the sender, or old."""

    status = 403


class Unmapped(ServiceError):
    """A signed, well-formed delivery the installation has no mapping for."""

    status = 422


@dataclass(frozen=True)
class NewInstallation:
    """A new installation; ``webhook_secret`` is shown once and kept sealed."""

    installation: DeployHookInstallation
    integration: Integration
    webhook_secret: str = field(repr=False)


@dataclass(frozen=True)
class HookTarget:
    """What a delivery to one installation needs, read in one unit of work."""

    installation_id: str
    org_slug: str
    project_slug: str
    webhook_secret: str = field(repr=False)
    #: environment name → (token id, sealed token secret); the newest live token wins.
    tokens: dict[str, tuple[int, bytes]] = field(repr=False)


@dataclass(frozen=True)
class Claim:
    """A delivery id claimed; ``release`` is set when the deployment already has one."""

    row_id: int
    release: str | None


def webhook_label(installation_id: str) -> str:
    return f"deploy_hook_installation:{installation_id}:webhook_secret"


def token_label(token_id: int) -> str:
    return f"integration_token:{token_id}"


def hook_slug(project_slug: str) -> str:
    return ("deploy-hook-" + project_slug)[:SLUG_MAX].rstrip("-")


def check_environments(names: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(names))
    if not chosen or len(chosen) > MAX_ENVIRONMENTS:
        raise Invalid(f"give 1-{MAX_ENVIRONMENTS} environments")
    if not all(ENVIRONMENT_RE.fullmatch(name) for name in chosen):
        raise Invalid("an environment is 1-64 letters, digits, dots, dashes or underscores")
    return chosen


# -- installing and narrowing ----------------------------------------------------------

def install(db: Session, org_id: int, project_slug: str, sealer: Sealer, *,
            environments: Iterable[str] = DEFAULT_ENVIRONMENTS,
            user_id: int | None = None) -> NewInstallation:
    """Install the hook for one project: an ``org:ci`` integration with one kept token
    per environment, and a webhook secret returned once."""
    chosen = check_environments(environments)
    project = directory.get_project(db, org_id, project_slug)
    taken = db.scalar(select(DeployHookInstallation.id).where(
        DeployHookInstallation.org_id == org_id,
        DeployHookInstallation.project_id == project.id))
    if taken is not None:
        raise Conflict("the deploy hook is already installed for this project")
    integration = integrations.create_integration(
        db, org_id, f"Deploy hook ({project.slug})", HOOK_SCOPES,
        slug=hook_slug(project.slug), kind=DEPLOY_HOOK, user_id=user_id)
    installation_id = "dh_" + secrets.token_urlsafe(21)
    webhook_secret = "whsec_" + secrets.token_urlsafe(32)
    row = DeployHookInstallation(
        id=installation_id, org_id=org_id, integration_id=integration.id,
        project_id=project.id,
        webhook_secret_sealed=sealer.seal(webhook_label(installation_id), webhook_secret))
    db.add(row)
    db.flush()
    for name in chosen:
        minted = integrations.create_token(db, integration, name=name, user_id=user_id)
        # Sealed under the row's id, which exists only once the token is stored.
        minted.row.sealed_secret = sealer.seal(token_label(minted.row.id), minted.token)
    db.flush()
    return NewInstallation(row, integration, webhook_secret)


def narrow_installations(db: Session, org_id: int,
                         user_id: int | None = None) -> list[Integration]:
    """Narrow to exactly ``org:ci`` every deploy hook integration of the organization
    that holds anything more (installations made before the hook asked for less). Their
    tokens stay the same and carry ``org:ci`` at once. Returns the narrowed ones."""
    rows = db.scalars(
        select(Integration)
        .join(DeployHookInstallation, DeployHookInstallation.integration_id == Integration.id)
        .where(DeployHookInstallation.org_id == org_id)
        .order_by(Integration.slug))
    narrowed = []
    for integration in rows:
        if integration.scopes - HOOK_SCOPES:
            integrations.set_scopes(db, integration, HOOK_SCOPES, user_id=user_id,
                                    event=audit.Event.SCOPES_NARROW)
            narrowed.append(integration)
    return narrowed


def purge_deliveries(db: Session, older_than: timedelta = DELIVERY_RETENTION) -> int:
    """Forget deliveries received more than ``older_than`` ago; returns how many."""
    result = db.execute(delete(DeployHookDelivery)
                        .where(DeployHookDelivery.received_at < utcnow() - older_than))
    return result.rowcount or 0


# -- a delivery ------------------------------------------------------------------------

def load_target(db: Session, installation_id: str, sealer: Sealer) -> HookTarget:
    """The installation a delivery names, with its webhook secret opened; unknown (or
    not even shaped like an id) is ``NotFound``."""
    if len(installation_id) > INSTALLATION_ID_MAX or not INSTALLATION_ID_RE.fullmatch(
            installation_id):
        raise NotFound("installation not found")
    found = db.execute(
        select(DeployHookInstallation, Organization.slug, Project.slug)
        .join(Organization, Organization.id == DeployHookInstallation.org_id)
        .join(Project, Project.id == DeployHookInstallation.project_id)
        .where(DeployHookInstallation.id == installation_id)).first()
    if found is None:
        raise NotFound("installation not found")
    installation, org_slug, project_slug = found
    tokens = {}
    for token in db.scalars(select(IntegrationToken).where(
            IntegrationToken.integration_id == installation.integration_id,
            IntegrationToken.revoked_at.is_(None),
            IntegrationToken.sealed_secret.is_not(None)).order_by(IntegrationToken.id)):
        tokens[token.name] = (token.id, token.sealed_secret)
    return HookTarget(installation.id, org_slug, project_slug,
                      _open(sealer, webhook_label(installation.id),
                            installation.webhook_secret_sealed),
                      tokens)


def _open(sealer: Sealer, label: str, sealed: bytes) -> str:
    try:
        return sealer.open(label, sealed)
    except SealBroken:
        # Not the sender's fault: the server secret changed since the hook was installed.
        raise Unavailable("the deploy hook's secrets cannot be opened") from None


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 a sender puts in ``v1=``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                    hashlib.sha256).hexdigest()


def _parse_signature(header: str) -> tuple[str, list[str]]:
    parts = header.split(",")
    if len(parts) > _SIGNATURE_PARTS_MAX:
        raise Invalid("X-Scopegate-Signature is malformed")
    timestamps, digests = [], []
    for part in parts:
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == SIGNATURE_SCHEME:
            digests.append(value.lower())
    if (len(timestamps) != 1 or not _TIMESTAMP_RE.fullmatch(timestamps[0]) or not digests
            or not all(_HEX_DIGEST_RE.fullmatch(d) for d in digests)):
        raise Invalid("X-Scopegate-Signature is malformed")
    return timestamps[0], digests


def verify_signature(secret: str, header: str, body: bytes, now: float) -> None:
    """Refuse unless one ``v1`` signature of ``body`` matches (compared in constant
    time) and its timestamp is within ``TOLERANCE_SECONDS`` of ``now``."""
    timestamp, digests = _parse_signature(header)
    expected = signature(secret, timestamp, body)
    matched = False
    for digest in digests:  # every one compared: the time taken does not say which
        matched |= hmac.compare_digest(expected, digest)
    if not matched:
        raise SignatureRefused("the signature does not match")
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise SignatureRefused("the signature's timestamp is outside the accepted window")


def token_for(target: HookTarget, sealer: Sealer, project: str, environment: str) -> str:
    """The kept token for ``environment``, once the delivery is for the installation's
    project; anything the installation does not map is ``Unmapped`` (422)."""
    if project != target.project_slug:
        raise Unmapped("the deployment is for a project this installation does not serve")
    kept = target.tokens.get(environment)
    if kept is None:
        raise Unmapped("the installation has no token for the deployment's environment")
    token_id, sealed = kept
    return _open(sealer, token_label(token_id), sealed)


def claim_delivery(db: Session, installation_id: str, delivery_id: str,
                   deployment_id: str) -> Claim:
    """Claim ``delivery_id`` (taken before: ``Conflict``, a replay). ``Claim.release``
    names the release an earlier delivery of the same deployment made."""
    row = DeployHookDelivery(installation_id=installation_id, delivery_id=delivery_id,
                             deployment_id=deployment_id)
    directory.insert(db, row, "this delivery was received before")
    made = db.scalar(
        select(DeployHookDelivery.release_version)
        .where(DeployHookDelivery.installation_id == installation_id,
               DeployHookDelivery.deployment_id == deployment_id,
               DeployHookDelivery.release_version.is_not(None))
        .limit(1))
    if made is not None:
        row.release_version = made
        db.flush()
    return Claim(row.id, made)


def record_release(db: Session, claim_id: int, version: str) -> None:
    """The claimed delivery made (or found) release ``version``."""
    db.execute(update(DeployHookDelivery).where(DeployHookDelivery.id == claim_id)
               .values(release_version=version))


def release_claim(db: Session, claim_id: int) -> None:
    """Give a delivery id back: no release came of it, so the sender's retry may run."""
    db.execute(delete(DeployHookDelivery).where(DeployHookDelivery.id == claim_id))
