"""The JSON API under ``/api/0/``. Each route declares its ``ScopeMap`` beside it."""
