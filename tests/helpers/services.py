"""The servers the tests use (PostgreSQL, Redis, RabbitMQ, their URLs), free ports, an app served on
loopback, and a platform's callback receiver."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn

from memeguard.migrate import create_database, drop_database

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
