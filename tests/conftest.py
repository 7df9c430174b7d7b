"""Shared fixtures: a real PostgreSQL database per run (a rollback per test), migrated SQLite files, blob
stores, and memes rendered with a real CJK font."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from memeguard.blobs import LocalBlobStore
from memeguard.db import make_engine
from memeguard.migrate import upgrade
from tests.helpers.services import Platform, create_pg_database, drop_pg_database
from worker.samples import render_meme

# Tests never read a developer's .memeguard: the shipped classifier `make model` writes there would change what
# every default Settings() analyzes with. Each run gets an empty data directory of its own.
os.environ["MEMEGUARD_DATA_DIR"] = tempfile.mkdtemp(prefix="memeguard-test-data-")
# the tests' platform receivers listen on loopback over plain http: allowed here as an on-premise receiver is
os.environ.setdefault("MEMEGUARD_CALLBACK_ALLOW", '["127.0.0.1/32"]')
os.environ.setdefault("MEMEGUARD_CALLBACK_HTTP_TENANTS", '["*"]')


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


@pytest.fixture
def platform(request: pytest.FixtureRequest) -> Iterator[Platform]:
    server = Platform(list(getattr(request, "param", [])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
