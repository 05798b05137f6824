"""The scope registry: vocabulary, hierarchy, read and token-only sets, validation."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import spec
from scopegate.core import scopes as registry

SRC = Path(registry.__file__).resolve().parents[1]


def test_the_vocabulary_is_exactly_the_designed_scopes():
    assert registry.ALL_SCOPES == spec.ALL_SCOPES


@pytest.mark.parametrize("scope", sorted(spec.ALL_SCOPES))
def test_every_scope_has_a_one_line_description(scope):
    description = registry.DESCRIPTIONS.get(scope, "")
    assert description.strip(), f"{scope} has no description"
    assert "\n" not in description


@pytest.mark.parametrize(("scope", "granted"), sorted(spec.CLOSURE.items()))
def test_holding_a_scope_grants_exactly_its_closure(scope, granted):
    assert registry.expand({scope}) == granted


@pytest.mark.parametrize("resource", ["org", "member", "team", "project", "event"])
def test_admin_implies_write_implies_read_per_resource(resource):
    admin, write, read = (f"{resource}:{level}" for level in ("admin", "write", "read"))
    assert {write, read} <= registry.expand({admin})
    assert read in registry.expand({write})
    assert admin not in registry.expand({write})
    assert write not in registry.expand({read})


def test_alerts_write_implies_alerts_read_only():
    assert registry.expand({"alerts:write"}) == {"alerts:write", "alerts:read"}


def test_org_admin_implies_org_integrations():
    assert "org:integrations" in registry.expand({"org:admin"})
    assert "org:integrations" not in registry.expand({"org:write"})


def test_member_write_implies_member_invite():
    assert "member:invite" in registry.expand({"member:write"})
    assert "member:write" not in registry.expand({"member:invite"})


@pytest.mark.parametrize("extra", sorted(spec.EXTRAS))
def test_extra_scopes_imply_nothing(extra):
    assert registry.expand({extra}) == {extra}


@pytest.mark.parametrize("token_only", sorted(spec.TOKEN_ONLY_SCOPES))
def test_no_other_scope_implies_a_token_only_scope(token_only):
    others = spec.ALL_SCOPES - {token_only}
    assert token_only not in registry.expand(others)


def test_expand_is_a_closure():
    for scope in spec.ALL_SCOPES:
        once = registry.expand({scope})
        assert registry.expand(once) == once
    assert registry.expand(()) == frozenset()


def test_read_scopes_are_the_six_read_levels():
    assert registry.READ_SCOPES == spec.READ_SCOPES


def test_token_only_scopes_are_org_ci_and_project_distribution():
    assert registry.TOKEN_ONLY_SCOPES == spec.TOKEN_ONLY_SCOPES


def test_validate_returns_known_scopes_as_a_frozenset():
    assert registry.validate(["org:read", "event:write", "org:read"]) == {
        "org:read",
        "event:write",
    }
    assert registry.validate([]) == frozenset()


@pytest.mark.parametrize(
    ("given", "unknown"),
    [
        (["org:read", "org:bogus"], ["org:bogus"]),
        (["zzz", "event:write", "aaa:read"], ["aaa:read", "zzz"]),
        (["ORG:READ"], ["ORG:READ"]),
        (["org:read "], ["org:read "]),
        ([""], [""]),
    ],
)
def test_validate_rejects_unknown_scopes_listing_each_of_them(given, unknown):
    """The error lists the strangers for the caller (``unknown``); its message, which
    reaches HTTP answers, names the rule and never repeats them."""
    with pytest.raises(registry.UnknownScopeError) as raised:
        registry.validate(given)
    assert raised.value.unknown == unknown
    for name in unknown:
        assert not name.strip() or name.strip() not in str(raised.value)
    for known in set(given) - set(unknown):
        assert known not in raised.value.unknown


def test_parse_accepts_spaces_and_commas_and_rejects_unknowns():
    assert registry.parse("org:read, event:write  project:read,") == {
        "org:read",
        "event:write",
        "project:read",
    }
    with pytest.raises(registry.UnknownScopeError) as raised:
        registry.parse("org:read event:nope")
    assert raised.value.unknown == ["event:nope"]


def test_format_scopes_uses_registry_order_space_separated():
    assert registry.format_scopes({"event:admin", "org:read", "event:write"}) == (
        "org:read event:write event:admin"
    )
    assert registry.ordered({"zz:top", "org:ci", "aa:b"}) == ["org:ci", "aa:b", "zz:top"]


def _scope_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in spec.ALL_SCOPES
    ]


def test_no_module_but_the_registry_spells_a_scope():
    """"One registry module owns the vocabulary; nothing else spells a scope"."""
    registry_file = Path(registry.__file__).resolve()
    offenders = [
        f"{path.relative_to(SRC)}:{line}: {value!r}"
        for path in sorted(SRC.rglob("*.py"))
        if path.resolve() != registry_file and "migrations" not in path.parts
        for line, value in _scope_literals(path)
    ]
    assert not offenders, "scope strings spelled outside core/scopes.py:\n" + "\n".join(
        offenders
    )
