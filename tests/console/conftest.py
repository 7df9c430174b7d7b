"""Console fixtures: an SQLite deployment with the console on, two tenants' finished items (one with a real
rendered meme image), reviewers of each role, and a logged-in HTTP client."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from composition.runtime import Runtime
from composition.webapp import build_app as create_app
from memeguard.db import Role
from memeguard.settings import Settings
from review import users
from tests.helpers.console import PASSWORD, SECRET, add_item, csrf_of, login  # noqa: F401
from tests.helpers.services import API_KEYS


@pytest.fixture
def runtime(tmp_path: Path, sqlite_url: str) -> Runtime:
    rt = Runtime(
        Settings(
            data_dir=tmp_path,
            database_url=sqlite_url,
            api_keys=API_KEYS,
            console_secret=SECRET,
            console_secure_cookies=False,
        )
    )
    with rt.sessions() as session:
        users.add_user(session, "ann", PASSWORD, Role.REVIEWER, ["tenant-a"], actor="t")
        users.add_user(session, "sam", PASSWORD, Role.SENIOR, ["tenant-a"], actor="t")
        session.commit()
    return rt


@pytest.fixture
def mine(runtime: Runtime, meme_png: bytes) -> uuid.UUID:
    """tenant-a's tagged item, with an image."""
    return add_item(runtime, "tenant-a", "mine", image=meme_png)


@pytest.fixture
def theirs(runtime: Runtime, meme_png: bytes) -> uuid.UUID:
    return add_item(runtime, "tenant-b", "theirs", image=meme_png)


@pytest.fixture
def client(runtime: Runtime) -> TestClient:
    return TestClient(create_app(runtime), follow_redirects=False)
