"""The operator CLI (``scopegate``)."""
