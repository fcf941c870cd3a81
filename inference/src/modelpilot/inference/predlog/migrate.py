"""Schema migrations of the prediction log (Alembic), run by `python -m modelpilot.inference.predlog migrate`."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

# A table of its own, so the log can share a database with MLflow's backend store (which has `alembic_version`).
VERSION_TABLE = "predlog_schema_version"
# Several pods, or a Job and a pod, may migrate at once: one transaction-scoped advisory lock serialises them.
MIGRATION_LOCK = 0x6D70_6C67  # "mplg"
MIGRATIONS = Path(__file__).parent / "migrations"


def _engine(dsn: str) -> Engine:
    # psycopg parses the DSN (URL or key=value form) itself; SQLAlchemy only drives the connection.
    return create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=NullPool)


def migrate(dsn: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (idempotent: a schema already there is left as it is)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = _engine(dsn)
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def current_revision(dsn: str) -> str | None:
    """The schema's revision; None for an empty database."""
    engine = _engine(dsn)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()
