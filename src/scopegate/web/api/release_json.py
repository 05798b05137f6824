"""Release lists as response bytes, serialized once with orjson.

The bytes equal what FastAPI makes of ``list[ReleaseOut]`` (``web/api/releases.py``);
``tests/test_issue_queries.py`` compares them byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from scopegate.services.releases import ReleaseRow


def releases_json(rows: Iterable[ReleaseRow]) -> bytes:
    """A JSON array of releases, as the list route returns it."""
    return orjson.dumps(
        [
            {
                "version": row.version,
                "ref": row.ref,
                "projects": row.projects,
                "dateCreated": row.date_created,
                "dateReleased": row.date_released,
            }
            for row in rows
        ],
        option=orjson.OPT_UTC_Z,
    )
