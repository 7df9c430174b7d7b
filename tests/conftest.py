"""Shared fixtures: a real PostgreSQL database per run (a rollback per test), migrated SQLite files, blob
stores, and memes rendered with a real CJK font."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from memeguard.blobs import LocalBlobStore
from memeguard.db import make_engine
from memeguard.migrate import create_database, drop_database, upgrade
from memeguard.samples import render_meme

# Tests never read a developer's .memeguard: the shipped classifier `make model` writes there would change what
# every default Settings() analyzes with. Each run gets an empty data directory of its own.
os.environ["MEMEGUARD_DATA_DIR"] = tempfile.mkdtemp(prefix="memeguard-test-data-")
# the tests' platform receivers listen on loopback over plain http: allowed here as an on-premise receiver is
os.environ.setdefault("MEMEGUARD_CALLBACK_ALLOW", '["127.0.0.1/32"]')
os.environ.setdefault("MEMEGUARD_CALLBACK_HTTP_TENANTS", '["*"]')
PG_ADMIN_URL = os.environ.get("MEMEGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("MEMEGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("MEMEGUARD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
API_KEYS = {"tenant-a": "a" * 24 + "-key-tenant-a", "tenant-b": "b" * 24 + "-key-tenant-b"}


def create_pg_database(prefix: str) -> str:
    """Create a fresh, migrated PostgreSQL database and return its URL."""
    return create_database(PG_ADMIN_URL, f"{prefix}_{uuid.uuid4().hex[:10]}")


def drop_pg_database(url: str) -> None:
    drop_database(PG_ADMIN_URL, url)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """An ASGI app served by uvicorn on a free localhost port, in a thread, for the test's duration."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


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


def free_port() -> int:
    """A loopback port nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Platform(ThreadingHTTPServer):
    """A platform's callback endpoint on localhost: records requests, answers from a script of statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.received = statuses, []
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/memeguard"


class Handler(BaseHTTPRequestHandler):
    server: Platform

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def platform(request: pytest.FixtureRequest) -> Iterator[Platform]:
    server = Platform(list(getattr(request, "param", [])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
