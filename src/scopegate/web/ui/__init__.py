"""Server-rendered pages (Jinja2): login, my organizations and tokens, approvals."""
