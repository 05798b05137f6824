"""The Jinja2 environment shared by the pages."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import HTMLResponse

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")


def render(request: Request, name: str, status_code: int = 200, **context: object) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def problem_page(request: Request, me: object, status: int, title: str,
                 message: str) -> HTMLResponse:
    """The error page a logged-in person (``me``) sees: a fixed title and message, never
    the request's own text."""
    return render(request, "error.html", status, me=me, title=title, message=message)
