"""试用: a meme dropped into the console goes through the API's pipeline and is shown as a person reads it,
under the reserved trial tenant — never in a queue, never anyone else's to see."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from composition.runtime import Runtime
from jobs import store
from memeguard.db import Role
from memeguard.schemas import TRIAL_TENANT
from memeguard.settings import Settings
from review import users
from tests.helpers.console import PASSWORD, csrf_of, login
from tests.helpers.services import API_KEYS
from worker.samples import render_meme


def run_trial(client: TestClient, image: bytes, **form: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/review/try",
        data={"csrf": csrf_of(client, "/review/try"), "post_text": "评论区看到的", "scene": "comment", **form},
        files={"image": ("meme.png", image, "image/png")},
    )


def test_a_trial_shows_the_verdict_as_a_person_reads_it(
    client: TestClient, runtime: Runtime, embedded_analyzer
) -> None:  # type: ignore[no-untyped-def]
    runtime.analyzer = embedded_analyzer
    login(client)
    assert 'id="try-form"' in client.get("/review/try").text
    done = run_trial(client, render_meme("你说得对，但是我不听", "doge"))
    assert done.status_code == 303 and done.headers["location"].startswith("/review/try/")
    page = client.get(done.headers["location"]).text
    for shown in (
        'id="try-verdict"',
        "情绪",
        "意图",
        "危害类型",
        'id="try-action"',
        "规则",
        "信号",
        "&#34;job_id&#34;",
    ):  # the raw JSON, escaped
        assert shown in page, shown
    assert "你说得对" in page.split('id="try-ocr"')[1][:200]  # the OCR text, read from the image
    job_id = done.headers["location"].rsplit("/", 1)[1]
    assert client.get(f"/review/try/{job_id}/image").headers["cache-control"] == "private, no-store"
    with runtime.sessions() as session:
        job = store.get_job(session, uuid.UUID(job_id))
    assert job is not None and job.tenant == TRIAL_TENANT and job.context["trial_by"] == "ann"
    for queue in ("tagged", "throttled", "low_confidence", "qa_sample"):
        assert job_id not in client.get(f"/review/queue/{queue}").text  # never in a review queue
    other = TestClient(client.app, follow_redirects=False)
    login(other, "sam")
    assert other.get(f"/review/try/{job_id}").status_code == 404  # someone else's trial does not exist
    assert other.get(f"/review/try/{job_id}/image").status_code == 404


def test_a_trial_is_refused_in_chinese_and_needs_the_csrf_token(client: TestClient) -> None:
    login(client)
    refused = run_trial(client, b"not an image at all")
    assert refused.status_code == 422 and "无法分析这张图片" in refused.text
    forged = client.post("/review/try", data={"csrf": "x" * 32}, files={"image": ("m.png", b"x", "image/png")})
    assert forged.status_code == 403
    assert run_trial(client, render_meme("早上好"), scene="weibo").status_code == 400


def test_the_trial_tenant_is_reserved(runtime: Runtime) -> None:
    with runtime.sessions() as session, pytest.raises(users.UserError, match="reserved"):
        users.add_user(session, "pm", PASSWORD, Role.REVIEWER, [TRIAL_TENANT], actor="t")
    with pytest.raises(ValidationError, match="reserved"):
        Settings(api_keys={TRIAL_TENANT: "k" * 40})


def test_a_product_manager_without_an_account_tries_it_with_an_api_key(
    client: TestClient, runtime: Runtime, embedded_analyzer
) -> None:  # type: ignore[no-untyped-def]
    """No console account: the page asks for a platform's API key, checks it as the API does, stores
    nothing of it, and a signed one-hour cookie lets this browser (only) open that key's trial results."""
    runtime.analyzer = embedded_analyzer
    form = client.get("/review/try").text
    assert 'name="api_key"' in form and 'name="csrf"' not in form  # no session: the key authenticates
    meme = {"image": ("meme.png", render_meme("你说得对，但是我不听", "doge"), "image/png")}
    wrong = client.post("/review/try", data={"api_key": "not-a-key", "scene": "comment"}, files=meme)
    assert wrong.status_code == 401 and "API 密钥" in wrong.text
    done = client.post("/review/try", data={"api_key": API_KEYS["tenant-a"], "scene": "danmaku"}, files=meme)
    assert done.status_code == 303 and "mg_trial" in done.headers["set-cookie"]
    assert API_KEYS["tenant-a"] not in done.headers["set-cookie"]  # the key itself is never kept
    assert "Max-Age=3600" in done.headers["set-cookie"] and "HttpOnly" in done.headers["set-cookie"]
    result = client.get(done.headers["location"])
    assert result.status_code == 200 and 'id="try-verdict"' in result.text and "弹幕" in result.text
    job_id = done.headers["location"].rsplit("/", 1)[1]
    assert client.get(f"/review/try/{job_id}/image").status_code == 200
    with runtime.sessions() as session:
        job = store.get_job(session, uuid.UUID(job_id))
    assert job is not None and job.tenant == TRIAL_TENANT and job.context["trial_by"] == "key:tenant-a"
    stranger = TestClient(client.app, follow_redirects=False)
    assert stranger.get(done.headers["location"]).headers["location"] == "/review/try"  # no key shown, nothing
    login(stranger)  # a reviewer of the same tenant: still not their trial
    assert stranger.get(done.headers["location"]).status_code == 404
    mine = run_trial(stranger, render_meme("早上好"))
    assert client.get(mine.headers["location"]).status_code == 404  # the key's cookie opens no user's trial
