"""Log records as one JSON object per line, and the logging config ``scopegate serve`` runs.

A line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the
``request_id`` of the request being handled when there is one (``web/request_id.py``),
and the record's extras (the access line's method, route, status, duration_ms, client,
…). ``json.dumps`` escapes newlines and quotes, so no value can forge a second line.
Credentials are kept out as before: the access line carries a redacted target, and
``QueryRedactingFilter`` stays on every handler.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from scopegate.settings import Settings
from scopegate.web.access_log import FILTER_NAME, QueryRedactingFilter, uvicorn_log_config
from scopegate.web.request_id import current_request_id

#: Attributes every ``LogRecord`` has: not extras.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message", "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id.get()
        if request_id is not None:
            payload["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in payload:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's ``log_config`` for ``settings.log_format``: the ``scopegate`` loggers at
    ``settings.log_level`` on the same handlers as uvicorn's, the redacting filter on
    every handler. In JSON, everything goes to stderr."""
    level = settings.log_level.upper()
    if settings.log_format == "text":
        config = uvicorn_log_config()
        config["loggers"]["scopegate"] = {"handlers": ["default"], "level": level,
                                          "propagate": False}
        return config
    handler = {"class": "logging.StreamHandler", "formatter": "json",
               "stream": "ext://sys.stderr", "filters": [FILTER_NAME]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {FILTER_NAME: {"()": QueryRedactingFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler, "access": dict(handler)},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["access"], "level": level, "propagate": False},
            "scopegate": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
