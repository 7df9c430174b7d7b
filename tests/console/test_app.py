"""The console's login, CSRF, sessions and tenant-scoped queue pages, over HTTP (SQLite deployment)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from memeguard import store, users
from memeguard.db import Role
from memeguard.runtime import Runtime
from memeguard.schemas import Emotion, HarmType, Intent, JobStatus, Verdict
from memeguard.settings import Settings
from policies import evaluate, load_policy
from producer.api import create_app
from tests.conftest import API_KEYS

SECRET = "console-" + "s" * 40
PASSWORD = "correct horse battery"


@pytest.fixture
def runtime(tmp_path: Path, sqlite_url: str) -> Runtime:
    rt = Runtime(Settings(data_dir=tmp_path, database_url=sqlite_url, api_keys=API_KEYS, console_secret=SECRET,
                          console_secure_cookies=False))
    with rt.sessions() as session:
        users.add_user(session, "ann", PASSWORD, Role.REVIEWER, ["tenant-a"], actor="t")
        for tenant, content in (("tenant-a", "mine"), ("tenant-b", "theirs")):
            job = store.insert_jobs(session, [store.NewJob(tenant, content, JobStatus.RUNNING)])[0]
            verdict = Verdict(emotion=Emotion.CONTEMPT, intent=Intent.SARCASM, harm_type=HarmType.GENERAL_OFFENSE,
                              confidence=0.7, explanation="阴阳怪气", analyzer="t", analyzer_version="1")
            store.finish_jobs(session, [(job.id, verdict, evaluate(load_policy(), verdict), {})])
        session.commit()
    return rt


@pytest.fixture
def client(runtime: Runtime) -> TestClient:
    return TestClient(create_app(runtime), follow_redirects=False)


def login(client: TestClient, password: str = PASSWORD, csrf: str | None = None):  # type: ignore[no-untyped-def]
    form = client.get("/review/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    return client.post("/review/login", data={"username": "ann", "password": password,
                                                "csrf": token if csrf is None else csrf})


def test_login_then_the_queue_shows_only_my_tenants(client: TestClient, runtime: Runtime) -> None:
    response = login(client)
    assert response.status_code == 303 and response.headers["location"] == "/review/queue/tagged"
    page = client.get("/review/queue/tagged")
    assert page.status_code == 200 and "队列：tagged（1）" in page.text and "一般冒犯" in page.text
    assert "tenant-a" in page.text and "tenant-b" not in page.text


@pytest.mark.parametrize(("password", "csrf", "status", "text"), [
    ("wrong password!!", None, 401, "用户名或密码错误"), (PASSWORD, "forged", 403, "CSRF")])
def test_login_refusals(client: TestClient, password: str, csrf: str | None, status: int, text: str) -> None:
    response = login(client, password, csrf)
    assert response.status_code == status and text in response.text
    assert client.get("/review/queue/tagged").status_code == 303  # still anonymous


def test_anonymous_and_wrong_role_are_refused(client: TestClient) -> None:
    assert client.get("/review/queue/tagged").headers["location"] == "/review/login"
    login(client)
    assert client.get("/review/queue/escalated").status_code == 403  # reviewers do not see escalations
    assert client.get("/review/queue/nonsense").status_code == 404


def test_logout_needs_the_session_csrf_token(client: TestClient) -> None:
    login(client)
    page = client.get("/review/queue/tagged")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert client.post("/review/logout", data={"csrf": "forged"}).status_code == 403
    assert client.post("/review/logout", data={"csrf": token}).status_code == 303
    client.cookies.clear()
    assert client.get("/review/queue/tagged").status_code == 303


def test_a_tampered_session_cookie_is_anonymous(client: TestClient) -> None:
    login(client)
    client.cookies.set("mg_session", client.cookies["mg_session"][:-2] + "xx", path="/review")
    assert client.get("/review/queue/tagged").status_code == 303


def test_the_console_is_off_without_a_secret(tmp_path: Path, sqlite_url: str) -> None:
    app = create_app(Runtime(Settings(data_dir=tmp_path, database_url=sqlite_url, api_keys=API_KEYS)))
    assert TestClient(app).get("/review/login").status_code == 404
