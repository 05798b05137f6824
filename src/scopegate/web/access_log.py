"""Credentials out of uvicorn's logs: the query-string redactor and the log config using it.

uvicorn's access log writes each request target whole, query string included. A token
wrongly sent as ``?access_token=`` is refused by the app, yet would sit in the log for
anyone who reads it; so do OAuth codes and states, and the agent session ids in approval
links (also when they ride, percent-encoded, inside the ``next`` of a login redirect).
``QueryRedactingFilter`` rewrites those values to ``[redacted]`` before any handler
formats the record, and ``uvicorn_log_config`` installs it on uvicorn's handlers.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any
from urllib.parse import quote, unquote_plus

from uvicorn.config import LOGGING_CONFIG

from scopegate.core.token_kinds import TokenKind

REDACTED = "[redacted]"
FILTER_NAME = "scopegate_redact_query"

#: Query parameters whose values are credentials, or tie a request to one (an OAuth
#: ``code``/``state``, an agent ``session`` in an approval link). The one list: names are
#: compared after percent-decoding, lower-casing, and ``-``/``.`` read as ``_``.
SENSITIVE_PARAMETERS = frozenset({
    "access_token", "token", "refresh_token", "id_token", "code", "code_verifier", "state",
    "client_secret", "client_assertion", "assertion", "password", "passwd", "pwd", "secret",
    "session", "session_id", "sessionid", "sid", "csrf_token", "csrf", "xsrf_token",
    "api_key", "apikey", "key", "signature", "sig", "jwt", "ticket", "otp", "auth",
    "authorization",
})
#: A name containing any of these is sensitive too (``x_auth_token``, ``agentSessionId``).
SENSITIVE_NAME_PARTS = ("token", "secret", "password", "passwd", "session", "credential",
                        "api_key", "apikey", "assertion")

#: A scopegate credential (by its prefix) or a JWS, wherever it appears.
_CREDENTIAL = re.compile(
    r"(?<![A-Za-z0-9])(?:" + "|".join(re.escape(kind.prefix) for kind in TokenKind)
    + r")[^/?&;#\s]*"
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
)
_SEPARATOR = re.compile(r"([&;])")
#: How many layers of percent-encoding, and of URLs nested in values, are looked through.
_MAX_DEPTH = 3


def _decoded(text: str) -> str:
    """``text`` percent-decoded until stable (bounded): ``access%255Ftoken`` too."""
    for _ in range(_MAX_DEPTH):
        decoded = unquote_plus(text)
        if decoded == text:
            break
        text = decoded
    return text


def is_sensitive_name(raw_name: str) -> bool:
    """Whether a query parameter named ``raw_name`` (as sent) carries a credential."""
    name = _decoded(raw_name).strip().lower().replace("-", "_").replace(".", "_")
    name = name.removesuffix("[]")
    return name in SENSITIVE_PARAMETERS or any(part in name for part in SENSITIVE_NAME_PARTS)


def _redacted_value(raw_value: str, depth: int) -> str:
    decoded = _decoded(raw_value)
    if _CREDENTIAL.search(decoded):
        return REDACTED
    if "?" in decoded and depth < _MAX_DEPTH:  # a URL in a value: ?next=/approve%3Fsession...
        inner = _redacted_target(decoded, depth + 1)
        if inner != decoded:
            return quote(inner, safe="/:[]")
    return raw_value


def _redacted_query(query: str, depth: int) -> str:
    pieces = _SEPARATOR.split(query)  # separators kept at odd indexes
    for index in range(0, len(pieces), 2):
        piece = pieces[index]
        name, equals, value = piece.partition("=")
        if _CREDENTIAL.search(_decoded(name)):
            pieces[index] = REDACTED
        elif equals and is_sensitive_name(name):
            pieces[index] = f"{name}={REDACTED}"
        elif equals:
            pieces[index] = f"{name}={_redacted_value(value, depth)}"
    return "".join(pieces)


def _redacted_target(target: str, depth: int) -> str:
    path, question, query = target.partition("?")
    path = _CREDENTIAL.sub(REDACTED, path)
    return path + question + _redacted_query(query, depth) if question else path


def redact_target(target: str) -> str:
    """``target`` (a path with its query) with credential values replaced by ``[redacted]``.

    Never raises: should redaction fail, the whole query string is withheld instead.
    """
    try:
        return _redacted_target(target, 0)
    except Exception:  # a log line must never break a request
        return target.partition("?")[0] + "?" + REDACTED


class QueryRedactingFilter(logging.Filter):
    """Redacts credentials in every string argument of a record that has a query string.

    uvicorn's access record is ``(client_addr, method, full_path, http_version,
    status_code)`` and its WebSocket lines ``(client_addr, path[, status])``; rewriting
    each argument that holds a ``?`` covers both without depending on their positions.
    Always lets the record through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(
                redact_target(arg) if isinstance(arg, str) and "?" in arg else arg
                for arg in args
            )
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging config with ``QueryRedactingFilter`` on every handler.

    A deep copy: uvicorn writes into the config it is given (``use_colors``).
    """
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})[FILTER_NAME] = {"()": QueryRedactingFilter}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append(FILTER_NAME)
    return config
