"""The arithmetic of agent scopes: what a token may carry, what an approval may store.

* An agent token carries ``(read scopes ∪ live write grant) ∩ caller's access ∩ requested``.
  Every term is intersected with the caller's access, so no input can raise it.
* A write grant stores ``requested ∩ approver's access``: capped at the approver.
"""

from __future__ import annotations

from collections.abc import Iterable

from scopegate.core import scopes as registry


def mintable_scopes(
    access: frozenset[str],
    grant: frozenset[str] | None,
    requested: Iterable[str] | None,
) -> frozenset[str]:
    """The scopes an agent token may carry for a caller holding ``access`` in the org.

    ``access`` is already hierarchy-closed (as ``Access.scopes`` is); ``grant`` is the
    live write grant for this org and agent session (``None`` when there is none);
    ``requested`` narrows the result when given.
    """
    reads = access & registry.READ_SCOPES
    granted = registry.expand(grant) if grant else frozenset()
    result = (reads | granted) & access
    if requested is not None:
        result &= frozenset(requested)
    return result


def cap_approval(requested: Iterable[str], approver_access: frozenset[str]) -> frozenset[str]:
    """The part of ``requested`` the approver holds; the rest is dropped, never stored."""
    return frozenset(requested) & approver_access


def merge_grant(existing: frozenset[str] | None, approved: frozenset[str]) -> frozenset[str]:
    """Union of a live grant's scopes with newly approved ones."""
    return (existing or frozenset()) | approved
