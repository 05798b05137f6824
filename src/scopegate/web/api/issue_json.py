"""Issues as response bytes, serialized once with orjson.

The bytes equal what FastAPI makes of ``IssueOut`` (``web/api/issues.py``): camelCase
keys, the id as a string, UTC datetimes as ISO 8601 with ``Z``, non-ASCII unescaped,
no spaces. ``tests/test_issue_queries.py`` compares them byte for byte. Skipping the
pydantic model and the response validation of rows we built ourselves is the point.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from scopegate.services.issues import IssueRow

_OPTIONS = orjson.OPT_UTC_Z


def _shape(row: IssueRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "title": row.title,
        "status": row.status,
        "project": row.project,
        "assignedTo": row.assigned_to,
        "dateCreated": row.date_created,
        "lastSeen": row.last_seen,
    }


def issues_json(rows: Iterable[IssueRow]) -> bytes:
    """A JSON array of issues, as the list route returns it."""
    return orjson.dumps([_shape(row) for row in rows], option=_OPTIONS)


def issue_json(row: IssueRow) -> bytes:
    """One issue, as the detail and update routes return it."""
    return orjson.dumps(_shape(row), option=_OPTIONS)
