"""What a person can grant an app: their organizations and the scopes they hold there.

The consent page offers the person's organizations; an org-bound app gets exactly one.
The granted scopes are the requested ones the person holds (through their role) in at
least one chosen organization; at request time an access token is still cut to the
role in the organization it is used on (``core/access.py``), so a scope held in one
chosen organization never works in another where the role lacks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from scopegate.core import scopes as registry
from scopegate.core.roles import Role, role_scopes
from scopegate.services import directory
from scopegate.services.errors import Invalid
from scopegate.services.oauth.server import Consent

MAX_CHOSEN = 100


@dataclass(frozen=True)
class OrgChoice:
    id: int
    slug: str
    name: str
    held: frozenset[str]


def org_choices(db: Session, user_id: int) -> list[OrgChoice]:
    """The person's organizations, each with the scopes their role holds there."""
    return [
        OrgChoice(m.org_id, m.organization.slug, m.organization.name,
                  registry.expand(role_scopes(Role(m.role))))
        for m in directory.memberships(db, user_id)
    ]


def held(choices: list[OrgChoice]) -> frozenset[str]:
    """The scopes held in at least one of ``choices``."""
    return frozenset().union(*(c.held for c in choices))


def decide(user_id: int, requested: frozenset[str], choices: list[OrgChoice],
           chosen_slugs: Iterable[str], *, org_bound: bool) -> Consent:
    """The consent for ``chosen_slugs`` (``Invalid`` naming the rule when it can't be)."""
    chosen = set(list(chosen_slugs)[:MAX_CHOSEN + 1])
    picked = [c for c in choices if c.slug in chosen]
    if not picked or len(picked) != len(chosen):
        raise Invalid("Choose one or more of your organizations.")
    if org_bound and len(picked) != 1:
        raise Invalid("This app works in exactly one organization: choose one.")
    scopes = requested & held(picked)
    if not scopes:
        raise Invalid("You hold none of the requested scopes in the chosen organizations.")
    return Consent(user_id=user_id, scopes=scopes, org_ids=frozenset(c.id for c in picked))
