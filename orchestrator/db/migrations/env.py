"""Alembic environment: runs hexfleet's migrations against the URL the caller configured."""

from __future__ import annotations

from alembic import context

from hexfleet.orchestrator.db.engine import make_engine
from hexfleet.orchestrator.db.schema import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def render_item(kind: str, obj: object, autogen_context: object) -> str | bool:
    """Migrations spell UTCDateTime as the column type it stores: DateTime(timezone=True)."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
