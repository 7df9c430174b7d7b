from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from composition.runtime import Runtime
from jobs import store
from memeguard.settings import Settings
from producer.api import create_app
from tests.helpers.images import SVG, png_bomb, solid
from tests.helpers.services import API_KEYS
from worker.samples import render_meme

A = {"Authorization": f"Bearer {API_KEYS['tenant-a']}"}
B = {"X-API-Key": API_KEYS["tenant-b"]}


@pytest.fixture
def runtime(tmp_path: Path, sqlite_url: str, embedded_analyzer) -> Runtime:  # type: ignore[no-untyped-def]
    """The embedded deployment (SQLite file, inline queue): the API serves requests from a thread pool,
    so it needs a real connection pool, not the single rolled-back test connection."""
    settings = Settings(
        data_dir=tmp_path, database_url=sqlite_url, api_keys=API_KEYS, max_upload_bytes=300_000, max_batch_items=5
    )
    rt = Runtime(settings)
    rt.analyzer = embedded_analyzer  # share the loaded OCR models across tests
    return rt


@pytest.fixture
def client(runtime: Runtime) -> TestClient:
    return TestClient(create_app(runtime))


def post(client: TestClient, data: bytes, content_id: str, headers: dict[str, str] = A, **form: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/jobs",
        headers=headers,
        data={"content_id": content_id, **form},
        files={"image": ("meme.png", data, "image/png")},
    )


def test_submit_runs_the_pipeline_and_get_returns_verdict_and_action(client: TestClient) -> None:
    meme = render_meme("你个sb赶紧去死")
    created = post(client, meme, "p1", post_text="", context=json.dumps({"scene": "评论"}))
    assert created.status_code == 201, created.text
    body = client.get(f"/v1/jobs/{created.json()['job_id']}", headers=A).json()
    assert body["status"] == "done"
    assert body["verdict"]["harm_type"] in ("targeted_harm", "general_offense")
    assert body["verdict"]["harm_type_zh"] and "sb" in body["verdict"]["ocr_text"]
    assert body["action"]["action"] == "block" and body["action"]["policy"] == "default@3"
    assert "ocr_ms" in body["timings"]


def test_resubmit_is_idempotent(client: TestClient) -> None:
    first = post(client, solid("PNG"), "p1")
    again = post(client, solid("PNG"), "p1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["job_id"] == again.json()["job_id"] and again.json()["created"] is False


def test_no_key_or_a_wrong_key_is_refused(client: TestClient) -> None:
    assert post(client, solid("PNG"), "p1", headers={}).status_code == 401
    wrong = post(client, solid("PNG"), "p1", headers={"Authorization": "Bearer " + "x" * 30})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    assert client.get("/v1/jobs?content_id=p1").status_code == 401


def test_a_tenant_never_sees_another_tenants_jobs(client: TestClient) -> None:
    job_id = post(client, solid("PNG"), "p1").json()["job_id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=B).status_code == 404
    assert client.get("/v1/jobs", params={"content_id": "p1"}, headers=B).status_code == 404
    assert client.get("/v1/jobs", params={"content_id": "p1"}, headers=A).json()["job_id"] == job_id
    assert client.get("/v1/jobs/not-a-uuid", headers=A).status_code == 404


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (SVG, 415, "unsupported_type"),
        (png_bomb(), 413, "too_many_pixels"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 50, 422, "corrupt_image"),
        (solid("PNG", (600, 600)) + b"\0" * 400_000, 413, "too_large"),
    ],
)
def test_rejections_are_4xx_with_a_code_and_stored(
    client: TestClient, runtime: Runtime, data: bytes, status: int, code: str
) -> None:
    response = post(client, data, "bad")
    assert response.status_code == status
    body = response.json()
    assert body["error"] == code and body["message"]
    with runtime.sessions() as session:
        job = store.find_job(session, "tenant-a", "bad")
    assert job is not None and job.status.value == "rejected" and job.error_code == code
    assert client.get(f"/v1/jobs/{body['job_id']}", headers=A).json()["error"]["code"] == code


def test_batch_returns_per_item_results(client: TestClient) -> None:
    items = [
        {"content_id": "b1", "image_base64": base64.b64encode(solid("PNG")).decode()},
        {"content_id": "b2", "image_base64": base64.b64encode(SVG).decode()},
        {"content_id": "b3", "image_base64": "%%% not base64"},
        {"content_id": "b4", "image_base64": base64.b64encode(solid("WEBP")).decode(), "post_text": "早上好"},
    ]
    body = client.post("/v1/jobs:batch", headers=A, json={"items": items}).json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert [r.get("error") for r in body["results"]] == [None, "unsupported_type", "invalid_encoding", None]
    assert body["results"][2]["job_id"]  # even an undecodable item is stored as a rejected job


def test_batch_over_the_item_limit_is_refused(client: TestClient) -> None:
    item = {"content_id": "x", "image_base64": base64.b64encode(solid("PNG")).decode()}
    response = client.post("/v1/jobs:batch", headers=A, json={"items": [item] * 6})
    assert response.status_code == 413 and response.json()["error"] == "too_many_items"


def test_stream_answers_one_line_per_item(client: TestClient) -> None:
    lines = [
        json.dumps({"content_id": f"s{i}", "image_base64": base64.b64encode(solid("PNG", (40 + i, 40))).decode()})
        for i in range(3)
    ]
    lines += ["{broken json", json.dumps({"content_id": "s-svg", "image_base64": base64.b64encode(SVG).decode()})]
    response = client.post(
        "/v1/jobs:stream", headers={**A, "Content-Type": "application/x-ndjson"}, content="\n".join(lines).encode()
    )
    assert response.status_code == 200
    results = [json.loads(line) for line in response.text.splitlines()]
    assert len(results) == 5
    done = [r for r in results if r.get("status") == "done"]
    assert {r["content_id"] for r in done} == {"s0", "s1", "s2"}
    assert all(r["verdict"] and r["action"] for r in done)
    errors = {r["line"]: r["error"] for r in results if r.get("error")}
    assert errors == {4: "invalid_line", 5: "unsupported_type"}


def test_health_readiness_metrics_and_docs(client: TestClient) -> None:
    post(client, solid("PNG"), "m1")
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    assert client.get("/metrics").status_code == 404  # tenant names are in it: not for the world
    metrics = TestClient(client.app, client=("127.0.0.1", 50000)).get("/metrics").text  # a scraper on this host
    for name in (
        "memeguard_jobs_total",
        "memeguard_stage_seconds_bucket",
        "memeguard_queue_depth",
        "memeguard_batch_size",
    ):
        assert name in metrics
    assert 'stage="validate"' in metrics
    assert client.get("/docs").status_code == 200
    assert "/v1/jobs:stream" in client.get("/openapi.json").json()["paths"]


def test_api_refuses_to_start_without_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no API keys"):
        create_app(Runtime(Settings(data_dir=tmp_path)))


def test_an_api_node_never_loads_ocr_or_torch() -> None:
    """Fleet API nodes install no analyzer extras: building the app must not import them."""
    import subprocess
    import sys

    code = (
        "import json, sys; from memeguard.settings import Settings; from composition.runtime import Runtime;"
        "from producer.api import create_app;"
        "create_app(Runtime(Settings(broker_url='redis://127.0.0.1:6379/0', database_url='sqlite://',"
        "api_keys={'t': 'x' * 20})));"
        "heavy = ('torch', 'rapidocr_onnxruntime', 'onnxruntime', 'cv2');"
        "print(json.dumps([m for m in heavy if m in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == []


def test_a_platform_can_appeal_its_own_job_only(client: TestClient) -> None:
    created = post(client, render_meme("你个sb赶紧去死"), "appeal-1")
    job_id = created.json()["job_id"]
    filed = client.post(f"/v1/jobs/{job_id}/appeal", json={"reason": "误判"}, headers=A)
    assert filed.status_code == 201 and filed.json()["status"] == "open"
    theirs = client.post(f"/v1/jobs/{job_id}/appeal", json={"reason": "x"}, headers=B)
    assert theirs.status_code == 404 and theirs.json()["error"] == "not_found"  # as GET says of it
    assert client.post(f"/v1/jobs/{job_id}/appeal", json={}, headers={}).status_code == 401
    again = client.post(f"/v1/jobs/{job_id}/appeal", json={"reason": "再看看"}, headers=A)
    assert again.status_code == 409 and again.json()["error"] == "appeal_open"  # one open appeal per job
    malformed = client.post("/v1/jobs/not-a-uuid/appeal", json={"reason": "x"}, headers=A)
    assert malformed.status_code == 404 and malformed.json()["error"] == "not_found"  # as GET says of it


def test_a_nul_in_post_text_is_a_422_with_a_code_and_the_batchs_valid_items_are_kept(client: TestClient) -> None:
    single = post(client, solid("PNG"), "nul-1", post_text="早上好\x00")
    assert single.status_code == 422 and single.json()["error"] == "invalid_text"
    items = [
        {"content_id": "nul-2", "image_base64": base64.b64encode(solid("PNG")).decode(), "post_text": "a\x00"},
        {"content_id": "nul-3", "image_base64": base64.b64encode(solid("PNG")).decode()},
        {"content_id": "nul-4", "image_base64": base64.b64encode(SVG).decode(), "post_text": "b\x00"},
    ]
    body = client.post("/v1/jobs:batch", headers=A, json={"items": items}).json()
    assert [r.get("error") for r in body["results"]] == ["invalid_text", None, "invalid_text"]


def test_too_large_states_the_uploads_size_not_the_limit_plus_one(client: TestClient) -> None:
    data = solid("PNG", (600, 600)) + b"\0" * 400_000
    body = post(client, data, "big").json()
    assert body["error"] == "too_large" and body["message"] == f"{len(data)} bytes exceeds the limit of 300000"


def test_readiness_answers_within_a_second_while_the_broker_is_down(tmp_path: Path, sqlite_url: str) -> None:
    import time

    down = Runtime(
        Settings(data_dir=tmp_path, database_url=sqlite_url, api_keys=API_KEYS, broker_url="redis://127.0.0.1:1/0")
    )  # nothing listens on port 1
    started = time.perf_counter()
    ready = TestClient(create_app(down)).get("/readyz")
    assert time.perf_counter() - started < 1.0  # kombu's default retries took ~6 s
    assert ready.status_code == 503 and ready.json()["checks"]["broker"].startswith("error")
    assert ready.json()["checks"]["database"] == "ok"


@pytest.mark.parametrize(
    ("broken", "code"),
    [
        ({"broker_url": "redis://127.0.0.1:1/0"}, "queue_unavailable"),  # Redis down: nothing listens on port 1
        ({"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/gone"}, "database_unavailable"),
    ],
)
def test_a_stream_ends_with_a_result_line_per_item_when_a_dependency_is_down(
    tmp_path: Path, sqlite_url: str, broken: dict[str, str], code: str
) -> None:
    settings = {"data_dir": tmp_path, "database_url": sqlite_url, "api_keys": API_KEYS, **broken}
    client = TestClient(create_app(Runtime(Settings(**settings))))  # type: ignore[arg-type]
    lines = [
        json.dumps({"content_id": f"down-{i}", "image_base64": base64.b64encode(solid("PNG")).decode()})
        for i in range(2)
    ]
    response = client.post("/v1/jobs:stream", headers=A, content="\n".join(lines) + "\n")
    assert response.status_code == 200  # before: the body never ended (the line's task died unanswered)
    results = [json.loads(line) for line in response.text.splitlines()]
    assert sorted(r["line"] for r in results) == [1, 2] and {r["error"] for r in results} == {code}


def test_connections_the_database_cut_are_replaced_and_an_unreachable_database_is_a_503(
    tmp_path: Path, pg_url: str
) -> None:
    import sqlalchemy as sa

    from memeguard.db import make_engine

    client = TestClient(create_app(Runtime(Settings(data_dir=tmp_path, database_url=pg_url, api_keys=API_KEYS))))
    assert client.get("/v1/jobs", params={"content_id": "none"}, headers=A).status_code == 404  # pool warmed
    admin = make_engine(pg_url)
    with admin.connect() as conn:  # what the fault campaign did: cut every other connection to the database
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    admin.dispose()
    for _ in range(3):  # before: a plain-text 500, three times of three
        after = client.get("/v1/jobs", params={"content_id": "none"}, headers=A)
        assert after.status_code == 404 and after.json()["error"] == "not_found"
    gone = TestClient(
        create_app(
            Runtime(
                Settings(
                    data_dir=tmp_path, api_keys=API_KEYS, database_url="postgresql+psycopg://postgres@127.0.0.1:1/x"
                )
            )
        )
    )
    down = gone.get("/v1/jobs", params={"content_id": "none"}, headers=A)
    assert down.status_code == 503 and down.json()["error"] == "database_unavailable"
    assert down.headers["retry-after"] == "1"


def test_every_error_has_the_one_shape_with_a_code(client: TestClient) -> None:
    unknown = client.get("/v1/nothing-here", headers=A)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    wrong_method = client.delete("/v1/jobs", headers=A)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
    missing = client.post("/v1/jobs:batch", headers=A, json={"not_items": []})
    assert missing.status_code == 422 and missing.json()["error"] == "invalid_request"
    assert missing.json()["fields"][0]["location"] == "body.items"
    bad_path = client.post("/v1/jobs/not-a-uuid/appeal", headers=A, json={})
    assert bad_path.status_code == 404 and bad_path.json()["error"] == "not_found"  # no such job, as on GET
    unparseable = client.post("/v1/jobs:batch", headers={**A, "content-type": "application/json"}, content=b"{")
    assert unparseable.status_code in (400, 422) and unparseable.json()["error"] in ("bad_request", "invalid_request")
    for response in (unknown, wrong_method, missing, bad_path, unparseable):
        assert set(response.json()) <= {"error", "message", "fields"} and response.json()["message"]


def test_a_stream_caps_its_items_and_each_lines_bytes_while_reading(
    tmp_path: Path, sqlite_url: str, embedded_analyzer
) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        data_dir=tmp_path, database_url=sqlite_url, api_keys=API_KEYS, max_upload_bytes=300_000, max_stream_items=2
    )
    runtime = Runtime(settings)
    runtime.analyzer = embedded_analyzer
    client = TestClient(create_app(runtime))
    item = json.dumps({"content_id": "cap-{}", "image_base64": base64.b64encode(solid("PNG")).decode()})

    def body():  # type: ignore[no-untyped-def]
        yield (item.replace("{}", "0") + "\n").encode()
        yield b'{"content_id": "huge", "image_base64": "' + b"A" * 300_000  # one line of 1.2 MB, in pieces
        for _ in range(3):
            yield b"A" * 300_000
        yield b'"}\n'
        yield (item.replace("{}", "1") + "\n" + item.replace("{}", "2") + "\n").encode()

    response = client.post("/v1/jobs:stream", headers=A, content=body())
    results = {r["line"]: r for r in (json.loads(line) for line in response.text.splitlines())}
    assert sorted(results) == [1, 2, 3, 4]
    assert results[2]["error"] == "line_too_large"  # refused while reading, never parsed
    assert results[1].get("status") == "done" and results[3].get("status") == "done", results
    assert results[4]["error"] == "too_many_items"  # two items per stream in this runtime


def test_metrics_need_the_metrics_token_when_one_is_set(tmp_path: Path, sqlite_url: str) -> None:
    token = "m" * 40
    client = TestClient(
        create_app(
            Runtime(Settings(data_dir=tmp_path, database_url=sqlite_url, api_keys=API_KEYS, metrics_token=token))
        )
    )  # type: ignore[arg-type]
    refused = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    assert client.get("/metrics", headers=A).status_code == 401  # a tenant's API key is not the metrics token
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert scraped.status_code == 200 and "memeguard_jobs_total" in scraped.text


def test_the_openapi_document_declares_how_to_present_a_key(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["APIKeyHeader"] == {**schemes["APIKeyHeader"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert {"HTTPBearer": []} in document["paths"]["/v1/jobs"]["post"]["security"]
    assert post(client, solid("PNG"), "key-header", headers={"X-API-Key": API_KEYS["tenant-a"]}).status_code == 201
