"""The audit log's hash chains: how an event is hashed, and how a chain is checked.

Each organization's events form one chain (events with no organization form chain
``NO_ORG``); event ``seq`` carries the hash of event ``seq - 1`` (``prev_hash``) and its
own hash over a canonical encoding of every stored field. Editing a field breaks that
row's hash; deleting or reordering rows breaks the links; deleting the newest rows is
caught by the chain's head (the last ``seq`` and ``hash``, kept in a table of its own).

The encoding is sorted-key compact JSON (ASCII) of the fields below: times as fixed-format
UTC with microseconds, scopes as a sorted list, absent values as ``null``. The row's
database ``id`` is not hashed (it is assigned after the hash is computed) and the
organization is hashed as ``chain``: deleting an organization sets the row's ``org_id``
to NULL, which must not read as tampering, while the chain key survives.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

#: The chain of events that name no organization.
NO_ORG = 0
#: ``prev_hash`` of a chain's first event.
GENESIS = "0" * 64
HASH_LENGTH = 64
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class ChainedEvent(Protocol):
    """An audit event as stored (the model's attributes; nothing else is read)."""

    @property
    def id(self) -> int | None: ...
    @property
    def chain(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def event(self) -> str: ...
    @property
    def org_id(self) -> int | None: ...
    @property
    def user_id(self) -> int | None: ...
    @property
    def session_id(self) -> str | None: ...
    @property
    def agent(self) -> str | None: ...
    @property
    def scopes(self) -> frozenset[str] | None: ...
    @property
    def ip(self) -> str | None: ...
    @property
    def user_agent(self) -> str | None: ...
    @property
    def detail(self) -> str: ...


@dataclass(frozen=True)
class Head:
    """A chain's head: the last event's ``seq`` and ``hash`` (``seq`` 0: no event yet)."""

    seq: int
    hash: str


class Reason(StrEnum):
    #: The row's fields do not hash to its stored hash.
    EDITED = "edited"
    #: A ``seq`` is absent: the row was deleted (or the newest rows, per the head).
    MISSING = "missing"
    #: The row does not link to the one before it (moved, or its predecessor replaced).
    OUT_OF_ORDER = "out of order"
    #: The last row and the chain's head disagree (or one of them is absent).
    HEAD_MISMATCH = "head mismatch"


@dataclass(frozen=True)
class Break:
    """The first broken link of a chain: where (``seq``, and the row's ``id`` when the
    row exists) and why."""

    chain: int
    seq: int
    id: int | None
    reason: Reason
    detail: str


def chain_of(org_id: int | None) -> int:
    """The chain an event of ``org_id`` belongs to."""
    return NO_ORG if org_id is None else org_id


def format_time(moment: datetime) -> str:
    """``moment`` as fixed-format UTC (a naive time is taken as UTC, as the database
    keeps it)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(TIME_FORMAT)


def canonical(event: ChainedEvent, *, chain: int, seq: int, prev_hash: str) -> bytes:
    """The bytes an event's hash is computed over."""
    fields = {
        "chain": chain,
        "seq": seq,
        "prev_hash": prev_hash,
        "created_at": format_time(event.created_at),
        "event": event.event,
        "user_id": event.user_id,
        "session_id": event.session_id,
        "agent": event.agent,
        "scopes": sorted(event.scopes) if event.scopes is not None else None,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "detail": event.detail,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")


def digest(event: ChainedEvent, *, chain: int, seq: int, prev_hash: str) -> str:
    """The hex SHA-256 of the event's canonical encoding."""
    return hashlib.sha256(canonical(event, chain=chain, seq=seq, prev_hash=prev_hash)).hexdigest()


def verify(chain: int, rows: Iterable[ChainedEvent], head: Head | None) -> Break | None:
    """The first broken link of ``chain``, or None when it is intact.

    ``rows`` are the chain's stored events in ``seq`` order; they are read once, keeping
    only the previous link, so a chain of any length is checked in bounded memory.
    """
    expected, prev_hash, last_id = 1, GENESIS, None
    for row in rows:
        if row.seq > expected:
            return Break(chain, expected, None, Reason.MISSING,
                         f"seq {expected}" + (f"..{row.seq - 1}" if row.seq - 1 > expected
                                              else "") + " absent (deleted)")
        if row.seq < expected:
            return Break(chain, row.seq, row.id, Reason.OUT_OF_ORDER,
                         f"seq {row.seq} repeated or out of order")
        if row.prev_hash != prev_hash:
            return Break(chain, row.seq, row.id, Reason.OUT_OF_ORDER,
                         f"does not link to seq {row.seq - 1}: moved, or the row before it "
                         "was replaced")
        if (row.chain != chain or row.org_id not in (None, chain if chain != NO_ORG else None)
                or digest(row, chain=chain, seq=row.seq, prev_hash=prev_hash) != row.hash):
            return Break(chain, row.seq, row.id, Reason.EDITED,
                         "its fields do not match its hash")
        expected, prev_hash, last_id = row.seq + 1, row.hash, row.id
    last = expected - 1
    if head is None:
        if last == 0:
            return None
        return Break(chain, last, last_id, Reason.HEAD_MISMATCH,
                     f"the chain has {last} event(s) but no head")
    if head.seq > last:
        return Break(chain, last + 1, None, Reason.MISSING,
                     f"the head records seq {head.seq}; the chain ends at {last} "
                     "(the newest event(s) deleted)")
    if head.seq < last or head.hash != prev_hash:
        return Break(chain, last, last_id, Reason.HEAD_MISMATCH,
                     f"the head (seq {head.seq}) does not match the last event (seq {last})")
    return None
