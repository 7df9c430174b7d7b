"""Console fixtures: an SQLite deployment with the console on, two tenants' finished items (one with a real
rendered meme image), reviewers of each role, and a logged-in HTTP client."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from memeguard import store, users
from memeguard.db import Role
from memeguard.runtime import Runtime
from memeguard.schemas import Emotion, HarmType, Intent, JobStatus, Signal, Verdict
from memeguard.settings import Settings
from policies import evaluate, load_policy
from producer.api import create_app
from tests.conftest import API_KEYS

SECRET = "console-" + "s" * 40
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def add_item(
    runtime: Runtime,
    tenant: str,
    content_id: str,
    *,
    image: bytes | None = None,
    harm: HarmType = HarmType.GENERAL_OFFENSE,
    confidence: float = 0.7,
    callback_url: str | None = None,
) -> uuid.UUID:
    """A finished job (verdict + the default policy's action), as the worker leaves it."""
    sha = runtime.blobs.put(image) if image else None
    with runtime.sessions() as session:
        job = store.insert_jobs(
            session,
            [
                store.NewJob(
                    tenant,
                    content_id,
                    JobStatus.RUNNING,
                    image_sha256=sha,
                    media_type="image/png" if image else None,
                    post_text="你说得对，但是我不听",
                    callback_url=callback_url,
                )
            ],
        )[0]
        verdict = Verdict(
            emotion=Emotion.CONTEMPT,
            intent=Intent.SARCASM,
            harm_type=harm,
            confidence=confidence,
            emotion_confidence=0.64,
            intent_confidence=0.8,
            explanation="命中「你说得对，但是」句式：表面同意、实则反驳，属阴阳怪气。",
            ocr_text="你说得对 但是我不听",
            analyzer="embedded",
            analyzer_version="3",
            signals=[
                Signal(
                    source="kb",
                    decided=["intent"],
                    evidence=["你说得对，但是"],
                    weight=0.8,
                    backs=["harm_type"] if harm is not HarmType.NONE else [],
                )
            ],
        )
        store.finish_jobs(session, [(job.id, verdict, evaluate(load_policy(), verdict), {})])
        session.commit()
    return job.id


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


def login(client: TestClient, username: str = "ann", password: str = PASSWORD, csrf: str | None = None):  # type: ignore[no-untyped-def]
    form = client.get("/review/login")
    token = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
    return client.post(
        "/review/login", data={"username": username, "password": password, "csrf": token if csrf is None else csrf}
    )


def csrf_of(client: TestClient, path: str = "/review/queue/tagged") -> str:
    """The session's CSRF token, as a page carries it in its forms."""
    return CSRF.search(client.get(path).text).group(1)  # type: ignore[union-attr]
