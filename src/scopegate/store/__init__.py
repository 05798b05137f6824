"""Storage: SQLAlchemy models, Alembic migrations and the key-value store."""
