"""The orchestrator's database: schema (SQLAlchemy 2 ORM), engine, and Alembic migrations."""
