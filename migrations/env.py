"""Alembic environment. On PostgreSQL every migration runs under lock and statement timeouts so a
migration never queues behind (or blocks) live traffic for long: it fails fast and can be retried."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from memeguard.db import Base, make_engine
from memeguard.settings import get_settings

LOCK_TIMEOUT = "5s"
STATEMENT_TIMEOUT = "60s"

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().effective_database_url


def run_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=_url().startswith("sqlite")
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    url = _url()
    engine = make_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
            connection.execute(text(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
            connection.commit()
        if connection.dialect.name == "sqlite":
            # Batch migrations recreate a table (copy, drop, rename); with foreign keys on, dropping a parent
            # table would cascade-delete its children's rows (e.g. banks -> bank_hashes). The pragma only
            # takes effect outside a transaction, so it is set before the migrations' transaction begins.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=connection.dialect.name == "sqlite"
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
