"""The console's login, CSRF, sessions and tenant-scoped queue pages, over HTTP (SQLite deployment)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from composition.runtime import Runtime
from composition.webapp import build_app as create_app
from memeguard.schemas import HarmType
from memeguard.settings import Settings
from tests.helpers.console import PASSWORD, add_item, csrf_of, login
from tests.helpers.services import API_KEYS


def test_login_then_the_queue_shows_only_my_tenants(client: TestClient, mine: uuid.UUID, theirs: uuid.UUID) -> None:
    response = login(client)
    assert response.status_code == 303 and response.headers["location"] == "/review/queue/tagged"
    page = client.get("/review/queue/tagged")
    assert page.status_code == 200 and "队列：打标（1）" in page.text and "一般冒犯" in page.text
    assert "tenant-a" in page.text and "tenant-b" not in page.text
    assert f"/review/item/{mine}" in page.text and f"/review/item/{theirs}" not in page.text
    assert "medium.harmful" in page.text and "打标（1）" in page.text  # the rule that fired; queue sizes in the nav


@pytest.mark.parametrize(
    ("password", "csrf", "status", "text"),
    [("wrong password!!", None, 401, "用户名或密码错误"), (PASSWORD, "forged", 403, "CSRF")],
)
def test_login_refusals(client: TestClient, password: str, csrf: str | None, status: int, text: str) -> None:
    response = login(client, password=password, csrf=csrf)
    assert response.status_code == status and text in response.text
    assert client.get("/review/queue/tagged").status_code == 303  # still anonymous


def test_anonymous_and_wrong_role_are_refused(client: TestClient) -> None:
    assert client.get("/review/queue/tagged").headers["location"] == "/review/login"
    login(client)
    assert client.get("/review/queue/escalated").status_code == 403  # reviewers do not see escalations
    assert client.get("/review/queue/nonsense").status_code == 404


def test_logout_needs_the_session_csrf_token(client: TestClient) -> None:
    login(client)
    token = csrf_of(client)
    assert client.post("/review/logout", data={"csrf": "forged"}).status_code == 403
    assert client.post("/review/logout", data={"csrf": token}).status_code == 303
    client.cookies.clear()
    assert client.get("/review/queue/tagged").status_code == 303


def test_logout_revokes_the_session_even_if_its_cookie_was_copied(client: TestClient) -> None:
    login(client)
    copied = client.cookies["mg_session"]
    thief = TestClient(client.app, follow_redirects=False)
    assert thief.get("/review/queue/tagged", headers={"Cookie": f"mg_session={copied}"}).status_code == 200
    assert client.post("/review/logout", data={"csrf": csrf_of(client)}).status_code == 303
    assert thief.get("/review/queue/tagged", headers={"Cookie": f"mg_session={copied}"}).status_code == 303
    login(client)  # a new session after the logout works
    assert client.get("/review/queue/tagged").status_code == 200


def test_a_tampered_session_cookie_is_anonymous(client: TestClient) -> None:
    login(client)
    token = client.cookies["mg_session"]
    fresh = TestClient(client.app, follow_redirects=False)
    assert fresh.get("/review/queue/tagged", headers={"Cookie": f"mg_session={token}"}).status_code == 200
    tampered = token[:-2] + ("xx" if not token.endswith("xx") else "yy")
    assert fresh.get("/review/queue/tagged", headers={"Cookie": f"mg_session={tampered}"}).status_code == 303


def test_the_console_is_off_without_a_secret(tmp_path: Path, sqlite_url: str) -> None:
    app = create_app(Runtime(Settings(data_dir=tmp_path, database_url=sqlite_url, api_keys=API_KEYS)))
    assert TestClient(app).get("/review/login").status_code == 404


def test_pages_forbid_framing_caching_and_foreign_scripts(client: TestClient) -> None:
    login(client)
    headers = client.get("/review/queue/tagged").headers
    assert (
        "script-src 'self'" in headers["content-security-policy"]
        and "frame-ancestors 'none'" in headers["content-security-policy"]
    )
    assert headers["cache-control"] == "no-store" and headers["x-frame-options"] == "DENY"
    assert client.get("/review/static/console.js").status_code == 200
    assert client.get("/review/static/..%2Fapp.py").status_code == 404


def test_next_claims_the_most_severe_free_item(client: TestClient, runtime: Runtime, mine: uuid.UUID) -> None:
    severe = add_item(runtime, "tenant-a", "severe", harm=HarmType.TARGETED_HARM)
    login(client)
    token = csrf_of(client)
    assert client.post("/review/queue/tagged/next", data={}).status_code == 403  # no CSRF token, no claim
    first = client.post("/review/queue/tagged/next", data={"csrf": token})
    assert first.headers["location"] == f"/review/item/{severe}?q=tagged"
    assert "ann" in client.get("/review/queue/tagged").text  # shown as being reviewed
    other = TestClient(client.app, follow_redirects=False)
    login(other, "sam")
    taken = other.post("/review/queue/tagged/next", data={"csrf": csrf_of(other)})
    assert taken.headers["location"] == f"/review/item/{mine}?q=tagged"  # ann's claim is skipped
    assert (
        other.post("/review/queue/tagged/next", data={"csrf": csrf_of(other)}).headers["location"]
        == f"/review/item/{mine}?q=tagged"
    )  # resuming my own claim
    token = csrf_of(client)
    client.post(f"/review/item/{severe}/decide", data={"csrf": token, "decision": "confirm"})
    assert (
        client.post("/review/queue/tagged/next", data={"csrf": token}).headers["location"]
        == "/review/queue/tagged?empty=1"
    )
