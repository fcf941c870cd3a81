"""Alembic's environment for the prediction log: always run through `predlog.migrate`, on its connection."""

from __future__ import annotations

from alembic import context

from modelpilot.inference.predlog.migrate import VERSION_TABLE

context.configure(connection=context.config.attributes["connection"], version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
