"""The permission editor's rows, derived from the scope registry (Sentry's integration
permission editor is the model).

One row per resource with a ``read``/``write``/``admin`` ladder (No access, Read, Read &
Write, Admin, as far as the ladder goes), and one on/off row for every other scope:
``org:ci``, the token-only scopes, and any scope added to the registry later. So every
scope an integration can hold has a control, and opening then saving an integration
never changes what it may do (``tests/test_permission_editor.py``).

A choice stands for the scopes it grants closed under the hierarchy (Sentry's "Read &
Write" is ``project:read project:write``); what an editor saves is therefore
``expand`` of what it showed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from scopegate.core import scopes as registry

LEVELS: Final = ("read", "write", "admin")
LEVEL_LABELS: Final = {"read": "Read", "write": "Read & Write", "admin": "Admin"}
NO_ACCESS: Final = "No access"
GRANTED: Final = "Granted"

#: Display names and order; a resource or scope not named here still gets a row, after
#: these, titled by its own name.
TITLES: Final[dict[str, str]] = {
    "project": "Project",
    "team": "Team",
    registry.PROJECT_RELEASES: "Release",
    registry.PROJECT_DISTRIBUTION: "Distribution",
    "event": "Issue & Event",
    "org": "Organization",
    "member": "Member",
    "alerts": "Alerts",
    registry.ORG_CI: "CI",
    registry.ORG_INTEGRATIONS: "Integrations",
    registry.MEMBER_INVITE: "Invite members",
}


@dataclass(frozen=True)
class Choice:
    """One option of a row: its value (a level name, or ``""`` for no access), its label,
    and the scopes it grants (closed under the hierarchy)."""

    value: str
    label: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class EditorRow:
    """A control: ``key`` is the form field (a resource or a scope), ``choices`` in
    order of power, the first always "No access"."""

    key: str
    title: str
    choices: tuple[Choice, ...]
    description: str

    def chosen(self, held: Iterable[str]) -> Choice:
        """The most powerful choice ``held`` covers (hierarchy applied)."""
        closed = registry.expand(held)
        best = self.choices[0]
        for choice in self.choices[1:]:
            if choice.scopes <= closed:
                best = choice
        return best

    def choice(self, value: str) -> Choice | None:
        return next((c for c in self.choices if c.value == value), None)


def _ladders() -> dict[str, list[str]]:
    ladders: dict[str, list[str]] = {}
    for scope in registry.ORDERED:
        resource, _, level = scope.partition(":")
        if level in LEVELS:
            ladders.setdefault(resource, []).append(scope)
    return ladders


def _rows() -> tuple[EditorRow, ...]:
    rows: dict[str, EditorRow] = {}
    laddered: set[str] = set()
    for resource, ladder in _ladders().items():
        ordered = sorted(ladder, key=lambda s: LEVELS.index(s.partition(":")[2]))
        choices = [Choice("", NO_ACCESS, frozenset())]
        for scope in ordered:
            level = scope.partition(":")[2]
            within = frozenset(s for s in registry.expand({scope})
                               if s.partition(":")[0] == resource and s in ordered)
            choices.append(Choice(level, LEVEL_LABELS[level], within))
        laddered.update(ordered)
        rows[resource] = EditorRow(
            resource, TITLES.get(resource, resource), tuple(choices),
            registry.DESCRIPTIONS[ordered[-1]])
    for scope in registry.ORDERED:
        if scope in laddered:
            continue
        rows[scope] = EditorRow(
            scope, TITLES.get(scope, scope),
            (Choice("", NO_ACCESS, frozenset()), Choice(scope, GRANTED, frozenset({scope}))),
            registry.DESCRIPTIONS[scope])
    named = [rows.pop(key) for key in TITLES if key in rows]
    return (*named, *rows.values())


#: Every row of the editor, in display order.
ROWS: Final[tuple[EditorRow, ...]] = _rows()


class InvalidChoice(ValueError):
    """A form value that is not one of its row's choices (the message names the row)."""


def selection(held: Iterable[str]) -> dict[str, str]:
    """Row key -> chosen value, for scopes ``held``: what the editor shows."""
    return {row.key: row.chosen(held).value for row in ROWS}


def scopes_from(form: Mapping[str, str]) -> frozenset[str]:
    """The scopes a submitted editor grants; a missing row means no access there."""
    granted: set[str] = set()
    for row in ROWS:
        choice = row.choice(form.get(row.key, ""))
        if choice is None:
            raise InvalidChoice(f"{row.title}: choose one of the listed options")
        granted |= choice.scopes
    return frozenset(granted)
