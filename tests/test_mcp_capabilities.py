"""Capabilities: each names its tools and the least scopes they need (pure)."""

from __future__ import annotations

import pytest

from scopegate.core import mcp_capabilities as caps
from scopegate.core import scopes as s
from scopegate.core.mcp_capabilities import Capability


def test_read_scopes_grant_inspect_only() -> None:
    assert caps.granted({s.ORG_READ, s.PROJECT_READ, s.EVENT_READ}) == {Capability.INSPECT}


def test_higher_scopes_imply_the_lower_ones_a_capability_needs() -> None:
    held = {s.ORG_WRITE, s.PROJECT_WRITE, s.EVENT_ADMIN, s.PROJECT_RELEASES}
    assert caps.granted(held) == set(Capability)


def test_a_capability_is_granted_only_with_all_its_scopes() -> None:
    assert caps.granted({s.ORG_READ, s.PROJECT_READ}) == set()
    assert caps.granted({s.ORG_READ, s.PROJECT_READ, s.EVENT_WRITE}) == {
        Capability.INSPECT, Capability.TRIAGE}


def test_the_scopes_of_chosen_capabilities_are_exactly_theirs() -> None:
    assert caps.scopes_for({Capability.INSPECT}) == (s.ORG_READ, s.PROJECT_READ, s.EVENT_READ)
    assert caps.scopes_for({Capability.TRIAGE}) == (s.EVENT_WRITE,)
    assert s.PROJECT_RELEASES not in caps.scopes_for({Capability.INSPECT, Capability.TRIAGE})


def test_every_tool_belongs_to_exactly_one_capability() -> None:
    tools = [tool for c in Capability for tool in caps.TOOLS[c]]
    assert len(tools) == len(set(tools)) == 8
    assert caps.tools_for({Capability.INSPECT}) == frozenset(caps.TOOLS[Capability.INSPECT])


def test_unknown_capability_names_are_refused_without_echo() -> None:
    with pytest.raises(ValueError) as refused:
        caps.parse(["inspect", "<script>"])
    assert "<script>" not in str(refused.value)
    assert caps.parse(["triage"]) == {Capability.TRIAGE}


def test_supported_scopes_never_include_offline_access() -> None:
    assert "offline_access" not in caps.SUPPORTED_SCOPES
    assert set(caps.SUPPORTED_SCOPES) <= s.ALL_SCOPES
