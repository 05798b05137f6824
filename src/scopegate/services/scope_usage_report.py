"""The scope-usage report: per credential, what it holds, what it used, and the least
powerful set of scopes that would have admitted every call it made; and narrowing an
integration or org token to that set.

The power of scopes comes from the endpoint declarations, which live in the web layer:
callers pass a ``ScopePower`` built from them (``web/api/declarations.py``).

Integrations and live org tokens are read from their tables, so one never used in the
window is listed too ("consider revoking"), and one deleted or revoked is not. Other
credentials (user tokens, OAuth grants, agent sessions) appear when they made a call in
the window, with what they held at their latest recorded call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scopegate.core import scope_usage as subjects
from scopegate.core import scopes as registry
from scopegate.core.access import Access
from scopegate.core.changes import Change, Topic
from scopegate.core.scope_power import ScopePower, essential, recommend
from scopegate.services import audit, integrations
from scopegate.services.errors import Forbidden, Invalid, NotFound
from scopegate.store.integration_models import INTERNAL, Integration, ScopeUsage
from scopegate.store.models import Organization, OrgToken, User, UserToken
from scopegate.store.oauth_models import OAuthClient, OAuthGrant
from scopegate.store.outbox import record_change
from scopegate.store.types import utcnow

MAX_DAYS = 365
_KIND_ORDER = {kind: n for n, kind in enumerate((
    subjects.INTEGRATION, subjects.ORG_TOKEN, subjects.USER_TOKEN, subjects.OAUTH,
    subjects.AGENT_SESSION))}


@dataclass(frozen=True)
class EndpointUse:
    """Calls of one method on one endpoint in the window, and the scope admitting them
    (``""``: the endpoint needs none)."""

    method: str
    endpoint: str
    admitted_by: str
    calls: int
    last_day: date


@dataclass(frozen=True)
class CredentialUsage:
    org_id: int
    org_slug: str
    subject: str
    kind: str
    #: For people: never a secret (names, emails, ids).
    name: str
    granted: frozenset[str]
    #: The granted scopes that admitted at least one call in the window.
    used: frozenset[str]
    calls: int
    last_day: date | None
    endpoints: tuple[EndpointUse, ...]
    recommended: frozenset[str]
    narrower: bool
    #: One sentence: "narrow to org:ci", "no smaller set exists", "never used…".
    advice: str
    #: Whether the page offers "narrow to recommended" (integrations and org tokens).
    narrowable: bool

    @property
    def unused(self) -> frozenset[str]:
        return self.granted - self.used


@dataclass
class _Tally:
    calls: int = 0
    last_day: date | None = None
    granted: frozenset[str] = frozenset()
    observed: set[frozenset[str]] = field(default_factory=set)
    endpoints: dict[tuple[str, str, str], list] = field(default_factory=dict)

    def add(self, method: str, endpoint: str, admitted: str, sufficient: frozenset[str],
            granted: frozenset[str], calls: int, day: date) -> None:
        self.calls += calls
        if self.last_day is None or day > self.last_day:
            self.last_day, self.granted = day, granted
        self.observed.add(sufficient)
        found = self.endpoints.setdefault((method, endpoint, admitted), [0, day])
        found[0] += calls
        found[1] = max(found[1], day)


@dataclass(frozen=True)
class _Holder:
    """A credential as its own table holds it: an integration or a live org token."""

    name: str
    granted: frozenset[str]
    narrowable: bool


def window(days: int, today: date | None = None) -> tuple[date, date]:
    """The first and last UTC day of the last ``days`` days (today included)."""
    if not 1 <= days <= MAX_DAYS:
        raise Invalid(f"days: between 1 and {MAX_DAYS}")
    last = today or utcnow().date()
    return last - timedelta(days=days - 1), last


def report(db: Session, power: ScopePower, *, days: int, org_id: int | None = None,
           today: date | None = None) -> list[CredentialUsage]:
    """Every credential of organization ``org_id`` (``None``: of all organizations)
    with its usage over the last ``days`` days and a recommendation."""
    first, last = window(days, today)
    tallies = _tallies(db, org_id, first, last)
    holders = _holders(db, org_id)
    for key in holders:
        tallies.setdefault(key, _Tally())
    names = _person_names(db, [k for k in tallies if k not in holders])
    slugs = _org_slugs(db, {org for org, _ in tallies})
    found = []
    for (org, subject), tally in tallies.items():
        kind = subjects.kind_of(subject)
        holder = holders.get((org, subject))
        if holder is None and kind in subjects.NARROWABLE:
            continue  # a deleted integration or a revoked org token
        granted = holder.granted if holder else tally.granted
        name = holder.name if holder else names.get(subject, subject)
        found.append(_usage(power, org, slugs.get(org, str(org)), subject, name, granted,
                            tally, days, bool(holder and holder.narrowable)))
    found.sort(key=lambda u: (u.org_slug, _KIND_ORDER.get(u.kind, 9), u.name, u.subject))
    return found


def _usage(power: ScopePower, org_id: int, org_slug: str, subject: str, name: str,
           granted: frozenset[str], tally: _Tally, days: int,
           may_narrow: bool) -> CredentialUsage:
    held = registry.expand(granted)
    scoped = {s for s in tally.observed if s}
    # Calls its current scopes no longer admit would be refused now: they say nothing
    # about what it needs.
    observed = [s for s in scoped if s & held]
    used = frozenset(admitted for (_, _, admitted) in tally.endpoints if admitted)
    rec = recommend(power, granted, sorted(observed, key=sorted),
                    candidates=subjects.candidates_for(subject), prefer=used)
    if tally.calls == 0:
        advice = f"never used in the last {days} days: consider revoking"
    elif scoped and not observed:
        advice = "its calls needed scopes it no longer holds"
    elif not observed:
        advice = f"no call in the last {days} days needed any of its scopes"
    elif rec.narrower:
        advice = f"narrow to {registry.format_scopes(rec.scopes)}"
    else:
        advice = "no smaller set exists"
    narrowable = may_narrow and bool(observed) and rec.narrower and bool(rec.scopes)
    endpoints = tuple(
        EndpointUse(method, endpoint, admitted, calls, day)
        for (method, endpoint, admitted), (calls, day) in sorted(tally.endpoints.items()))
    return CredentialUsage(
        org_id=org_id, org_slug=org_slug, subject=subject, kind=subjects.kind_of(subject),
        name=name, granted=granted, used=used,
        calls=tally.calls, last_day=tally.last_day, endpoints=endpoints,
        recommended=rec.scopes if observed else frozenset(),
        narrower=rec.narrower and bool(observed), advice=advice, narrowable=narrowable)


def _tallies(db: Session, org_id: int | None, first: date,
             last: date) -> dict[tuple[int, str], _Tally]:
    u = ScopeUsage
    query = (
        select(u.org_id, u.subject, u.method, u.endpoint, u.admitted_by, u.sufficient,
               u.granted, func.sum(u.calls), func.max(u.day))
        .where(u.day >= first, u.day <= last)
        .group_by(u.org_id, u.subject, u.method, u.endpoint, u.admitted_by, u.sufficient,
                  u.granted)
    )
    if org_id is not None:
        query = query.where(u.org_id == org_id)
    tallies: dict[tuple[int, str], _Tally] = defaultdict(_Tally)
    for org, subject, method, endpoint, admitted, sufficient, granted, calls, day in (
            db.execute(query)):
        tallies[(org, subject)].add(method, endpoint, admitted, sufficient, granted,
                                    int(calls), day)
    return dict(tallies)


def _holders(db: Session, org_id: int | None) -> dict[tuple[int, str], _Holder]:
    integration_query = select(Integration)
    token_query = select(OrgToken).where(OrgToken.revoked_at.is_(None))
    if org_id is not None:
        integration_query = integration_query.where(Integration.org_id == org_id)
        token_query = token_query.where(OrgToken.org_id == org_id)
    holders = {}
    for row in db.scalars(integration_query):
        subject = subjects.subject_for(subjects.INTEGRATION, row.id)
        holders[(row.org_id, subject)] = _Holder(
            f"{row.name} ({row.slug})", row.scopes, row.kind == INTERNAL)
    for token in db.scalars(token_query):
        subject = subjects.subject_for(subjects.ORG_TOKEN, token.id)
        label = f"org token {token.name!r} (#{token.id})" if token.name else (
            f"org token #{token.id}")
        holders[(token.org_id, subject)] = _Holder(label, token.scopes, True)
    return holders


def _person_names(db: Session, keys: Iterable[tuple[int, str]]) -> dict[str, str]:
    """Display names of user tokens, OAuth grants and agent sessions: the token's name,
    the app's name, the session id, and the person's email. Never a secret."""
    by_kind: dict[str, dict[int, str]] = defaultdict(dict)
    for _, subject in keys:
        kind = subjects.kind_of(subject)
        if kind == subjects.OAUTH:
            number = subject.rpartition("-")[2]
            if number.isdigit() and len(number) < 19:
                by_kind[kind][int(number)] = subject
        elif (found := subjects.row_id(subject)) is not None:
            by_kind[kind][found] = subject
    names: dict[str, str] = {}
    tokens = by_kind[subjects.USER_TOKEN]
    if tokens:
        for token, email in db.execute(
                select(UserToken, User.email).join(User, User.id == UserToken.user_id)
                .where(UserToken.id.in_(tokens))):
            subject = tokens[token.id]
            live = token.revoked_at is None and subject.endswith(":" + token.token_hash[:12])
            label = f"user token {token.name!r}" if token.name else "user token"
            names[subject] = (f"{label} (#{token.id}) of {email}"
                              + ("" if live else " (revoked)"))
    grants = by_kind[subjects.OAUTH]
    if grants:
        for grant, client, email in db.execute(
                select(OAuthGrant, OAuthClient.name, User.email)
                .join(OAuthClient, OAuthClient.id == OAuthGrant.client_pk)
                .outerjoin(User, User.id == OAuthGrant.user_id)
                .where(OAuthGrant.id.in_(grants))):
            names[grants[grant.id]] = (f"OAuth app {client!r} for {email or 'upstream'}"
                                       + ("" if grant.revoked_at is None else " (revoked)"))
    people = by_kind[subjects.AGENT_SESSION]
    if people:
        emails = dict(db.execute(select(User.id, User.email).where(User.id.in_(people))).all())
        for user_id, subject in people.items():
            session = subject.split(":", 2)[2]
            names[subject] = f"agent session {session!r} of {emails.get(user_id, user_id)}"
    return names


def _org_slugs(db: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(db.execute(select(Organization.id, Organization.slug)
                           .where(Organization.id.in_(ids))).all())


# -- narrowing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Narrowed:
    subject: str
    before: frozenset[str]
    after: frozenset[str]


def narrow_to_recommended(db: Session, power: ScopePower, org_id: int, subject: str,
                          scopes: Iterable[str], *, editor: Access) -> Narrowed:
    """Give the integration or org token ``subject`` of ``org_id`` the smaller set
    ``scopes`` (the recommendation the editor confirmed); its live tokens carry it at
    once in every process. Refused: other credentials, built-in integrations, and any
    set that would unlock something the credential cannot reach now."""
    kind = subjects.kind_of(subject)
    number = subjects.row_id(subject)
    if kind not in subjects.NARROWABLE or number is None:
        raise Invalid("only integrations and org tokens are narrowed here")
    after = integrations.validate_scopes(scopes)
    if not after:
        raise Invalid("scopes: keep at least one scope (revoke the credential instead)")
    if kind == subjects.INTEGRATION:
        row = db.scalar(select(Integration).where(Integration.id == number,
                                                  Integration.org_id == org_id))
        if row is None:
            raise NotFound("integration not found")
        if row.kind != INTERNAL:
            raise Forbidden("A built-in integration's scopes are managed by scopegate.")
        before = row.scopes
        _check_narrower(power, before, after)
        integrations.check_raise(editor, before, after)
        integrations.set_scopes(db, row, after, user_id=editor.principal.user_id,
                                event=audit.Event.SCOPES_NARROW)
        return Narrowed(subject, before, after)
    token = db.scalar(select(OrgToken).where(OrgToken.id == number, OrgToken.org_id == org_id,
                                             OrgToken.revoked_at.is_(None)))
    if token is None:
        raise NotFound("token not found")
    before = token.scopes
    _check_narrower(power, before, after)
    integrations.check_raise(editor, before, after)
    token.scopes = after
    db.flush()
    record_change(db, Change(Topic.CREDENTIAL, token.token_hash))
    audit.record(db, audit.Event.SCOPES_NARROW, org_id=org_id,
                 user_id=editor.principal.user_id, scopes=after,
                 detail=f"org_token={token.id} before={registry.format_scopes(before)}")
    return Narrowed(subject, before, after)


def _check_narrower(power: ScopePower, before: frozenset[str], after: frozenset[str]) -> None:
    before_power, after_power = power.of(before), power.of(after)
    held = registry.expand(before)
    if not after_power <= before_power or any(
            s not in held and not power.of({s}) for s in after):
        raise Forbidden("That set unlocks something the credential cannot do now: "
                        "narrowing never widens.")
    if (len(after_power), len(essential(after))) >= (len(before_power),
                                                      len(essential(before))):
        raise Invalid("That set is not smaller than what the credential holds.")
