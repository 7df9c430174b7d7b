"""Shared fixtures: a real PostgreSQL database per run (a rollback per test), migrated SQLite files, blob
stores, and memes rendered with a real CJK font."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from memeguard.blobs import LocalBlobStore
from memeguard.db import make_engine
from memeguard.migrate import upgrade
from memeguard.samples import render_meme

PG_ADMIN_URL = os.environ.get("MEMEGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("MEMEGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
API_KEYS = {"tenant-a": "a" * 24 + "-key-tenant-a", "tenant-b": "b" * 24 + "-key-tenant-b"}


def create_pg_database(prefix: str) -> str:
    """Create a fresh, migrated PostgreSQL database and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    return url


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = create_pg_database("memeguard_test")
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_connection(pg_engine: Engine) -> Iterator[Connection]:
    """One outer transaction per test, rolled back at the end: code under test may commit freely
    (its commits release savepoints), and nothing survives the test."""
    connection = pg_engine.connect()
    transaction = connection.begin()
    yield connection
    transaction.rollback()
    connection.close()


@pytest.fixture
def pg_sessions(pg_connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(bind=pg_connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def pg_session(pg_sessions: sessionmaker[Session]) -> Iterator[Session]:
    with pg_sessions() as session:
        yield session


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'memeguard.db'}"
    upgrade(url)
    return url


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture(scope="session")
def meme_png() -> bytes:
    return render_meme("你说得对，但是我不听", "doge")


@pytest.fixture(scope="session")
def embedded_analyzer():  # type: ignore[no-untyped-def]
    """The real embedded analyzer (real OCR models), loaded once for the whole run."""
    from worker.analyzers.embedded import EmbeddedAnalyzer

    return EmbeddedAnalyzer.default()
