"""Byte caps applied while reading, and per-tenant rate limits, upload quotas and queued-job caps."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from composition.runtime import Runtime
from jobs import store
from memeguard.schemas import JobStatus
from memeguard.settings import Settings
from producer.api import create_app
from producer.body_limits import BodyCaps, BodyLimit
from producer.quotas import Quotas
from tests.helpers.images import solid
from tests.helpers.services import API_KEYS, REDIS_URL

A = {"Authorization": f"Bearer {API_KEYS['tenant-a']}"}
B = {"Authorization": f"Bearer {API_KEYS['tenant-b']}"}


def make_client(tmp_path: Path, sqlite_url: str, analyzer: Any, **overrides: Any) -> tuple[TestClient, Runtime]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=sqlite_url,
        api_keys=API_KEYS,
        max_upload_bytes=300_000,
        max_batch_items=5,
        max_batch_bytes=200_000,
        **overrides,
    )
    runtime = Runtime(settings)
    runtime.analyzer = analyzer
    return TestClient(create_app(runtime)), runtime


@pytest.fixture
def edge(tmp_path: Path, sqlite_url: str, embedded_analyzer: Any) -> tuple[TestClient, Runtime]:
    return make_client(tmp_path, sqlite_url, embedded_analyzer)


def upload(client: TestClient, data: bytes, content_id: str, headers: dict[str, str] = A) -> Any:
    return client.post(
        "/v1/jobs", headers=headers, data={"content_id": content_id}, files={"image": ("meme.png", data, "image/png")}
    )


def limited(tenant: str, limit: str) -> float:
    return REGISTRY.get_sample_value("memeguard_limited_total", {"tenant": tenant, "limit": limit}) or 0.0


# --- byte caps ---------------------------------------------------------------------------------------------


def test_a_declared_length_over_the_cap_is_refused_before_reading(edge: tuple[TestClient, Runtime]) -> None:
    client, _ = edge
    body = json.dumps({"items": [{"content_id": "x", "image_base64": "A" * 300_000}]})
    response = client.post("/v1/jobs:batch", headers={**A, "Content-Type": "application/json"}, content=body)
    assert response.status_code == 413 and response.json()["error"] == "too_large"
    assert "200000" in response.json()["message"]


def test_a_chunked_body_is_cut_off_once_it_passes_the_cap(edge: tuple[TestClient, Runtime]) -> None:
    client, _ = edge

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap can only apply while reading
        yield b'{"items": [{"content_id": "x", "image_base64": "'
        for _ in range(40):
            yield b"A" * 10_000
        yield b'"}]}'

    response = client.post("/v1/jobs:batch", headers={**A, "Content-Type": "application/json"}, content=chunks())
    assert response.status_code == 413 and response.json()["error"] == "too_large"


def test_the_middleware_stops_pulling_the_body_at_the_cap() -> None:
    """Memory stays bounded: an endless body is pulled only until it passes the cap, then answered 413."""
    pulled, sent = 0, []

    async def endless() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send_: Any) -> None:
        from fastapi import HTTPException

        try:
            while True:
                await receive()
        except HTTPException as exc:
            await send_({"type": "http.response.start", "status": exc.status_code, "headers": []})
            await send_({"type": "http.response.body", "body": json.dumps(exc.detail).encode()})

    limit = BodyLimit(app, BodyCaps(upload=10_000, batch=10_000, default=10_000))
    scope = {"type": "http", "path": "/v1/jobs:batch", "headers": []}
    asyncio.run(limit(scope, endless, send))  # type: ignore[arg-type]
    assert pulled == 10 and sent[0]["status"] == 413


def test_an_image_somewhat_over_the_limit_is_a_stored_rejection_far_over_is_cut(
    edge: tuple[TestClient, Runtime],
) -> None:
    client, runtime = edge
    near = upload(client, solid("PNG", (600, 600)) + b"\0" * 400_000, "near")
    assert near.status_code == 413 and near.json()["job_id"] and "exceeds the limit of 300000" in near.json()["message"]
    far = upload(client, solid("PNG", (600, 600)) + b"\0" * 900_000, "far")
    assert far.status_code == 413 and far.json()["error"] == "too_large" and "job_id" not in far.json()
    with runtime.sessions() as session:
        assert store.find_job(session, "tenant-a", "near") is not None
        assert store.find_job(session, "tenant-a", "far") is None


def test_other_bodies_have_their_own_cap(tmp_path: Path, sqlite_url: str, embedded_analyzer: Any) -> None:
    client, _ = make_client(tmp_path, sqlite_url, embedded_analyzer, max_body_bytes=2048)
    job = str(uuid.uuid4())
    response = client.post(f"/v1/jobs/{job}/appeal", headers=A, json={"reason": "长" * 2000})
    assert response.status_code == 413 and response.json()["error"] == "too_large"


# --- rate limits, quotas, queued caps ----------------------------------------------------------------------


def test_requests_past_the_rate_limit_get_429_with_retry_after(
    tmp_path: Path, sqlite_url: str, embedded_analyzer: Any
) -> None:
    client, _ = make_client(
        tmp_path, sqlite_url, embedded_analyzer, rate_limit="3/minute", tenant_limits={"tenant-b": {"rate_limit": None}}
    )
    before = limited("tenant-a", "requests")
    answers = [client.get("/v1/jobs", params={"content_id": "nope"}, headers=A) for _ in range(4)]
    assert [a.status_code for a in answers] == [404, 404, 404, 429]
    assert answers[3].json()["error"] == "rate_limited"
    assert 1 <= int(answers[3].headers["Retry-After"]) <= 60
    assert limited("tenant-a", "requests") == before + 1
    assert all(client.get("/v1/jobs", params={"content_id": "n"}, headers=B).status_code == 404 for _ in range(5))


def test_the_upload_quota_refuses_past_its_amount(tmp_path: Path, sqlite_url: str, embedded_analyzer: Any) -> None:
    client, _ = make_client(tmp_path, sqlite_url, embedded_analyzer, upload_quota="3/day")
    assert upload(client, solid("PNG"), "q1").status_code == 201
    assert upload(client, solid("PNG"), "q1").status_code == 200  # a resubmission is an upload too
    assert upload(client, solid("PNG"), "q2").status_code == 201
    refused = upload(client, solid("PNG"), "q3")
    assert refused.status_code == 429 and refused.json()["error"] == "quota_exceeded"
    # the day's window (fixed, aligned to UTC days), not a second: what is left of today
    assert abs(int(refused.headers["Retry-After"]) - (86400 - int(time.time()) % 86400)) <= 5
    item = {"content_id": "q4", "image_base64": base64.b64encode(solid("PNG")).decode()}
    batch = client.post("/v1/jobs:batch", headers=A, json={"items": [item]})
    assert batch.status_code == 429 and batch.json()["error"] == "quota_exceeded"
    assert upload(client, solid("PNG"), "q3", headers=B).status_code == 201  # another tenant's own quota


def test_a_stream_line_past_the_quota_gets_its_own_error_line(
    tmp_path: Path, sqlite_url: str, embedded_analyzer: Any
) -> None:
    client, _ = make_client(tmp_path, sqlite_url, embedded_analyzer, upload_quota="1/hour")
    lines = "".join(
        json.dumps({"content_id": f"s{n}", "image_base64": base64.b64encode(solid("PNG")).decode()}) + "\n"
        for n in range(2)
    )
    response = client.post("/v1/jobs:stream", headers={**A, "Content-Type": "application/x-ndjson"}, content=lines)
    results = sorted((json.loads(line) for line in response.text.splitlines()), key=lambda r: r["line"])
    codes = sorted(r.get("error") or r.get("status") for r in results)
    assert codes == ["done", "quota_exceeded"]
    assert next(r for r in results if r.get("error"))["retry_after_s"] > 0


def test_a_tenant_with_too_many_queued_jobs_is_refused(tmp_path: Path, sqlite_url: str, embedded_analyzer: Any) -> None:
    client, runtime = make_client(tmp_path, sqlite_url, embedded_analyzer, max_queued=2)
    with runtime.sessions() as session:
        store.insert_jobs(session, [store.NewJob("tenant-a", f"w{n}", JobStatus.QUEUED) for n in range(2)])
        store.insert_jobs(session, [store.NewJob("tenant-a", "r", JobStatus.RUNNING)])
        session.commit()
    before = limited("tenant-a", "queued")
    refused = upload(client, solid("PNG"), "one-more")
    assert refused.status_code == 429 and refused.json()["error"] == "queue_full"
    assert refused.headers["Retry-After"] and limited("tenant-a", "queued") == before + 1
    assert upload(client, solid("PNG"), "one-more", headers=B).status_code == 201


def test_limits_are_shared_by_api_processes_through_redis() -> None:
    """Two API processes (two ``Quotas`` on the same Redis) draw from one budget per tenant."""
    tenant = f"shared-{uuid.uuid4().hex[:8]}"
    settings = Settings(broker_url=REDIS_URL, api_keys=API_KEYS, rate_limit="3/minute")
    first, second = Quotas(settings, lambda _: 0), Quotas(settings, lambda _: 0)
    first.request(tenant)
    second.request(tenant)
    first.request(tenant)
    with pytest.raises(Exception) as refused:
        second.request(tenant)
    assert getattr(refused.value, "status_code", None) == 429


def test_a_dead_limit_store_lets_requests_through_and_counts_it() -> None:
    settings = Settings(api_keys=API_KEYS, rate_limit="1/minute", rate_limit_storage="redis://127.0.0.1:1/0")
    quotas = Quotas(settings, lambda _: 0)
    before = REGISTRY.get_sample_value("memeguard_limiter_errors_total") or 0.0
    quotas.request("t")
    quotas.request("t")  # would be over the limit: the store is down, so nothing can be counted
    assert (REGISTRY.get_sample_value("memeguard_limiter_errors_total") or 0.0) >= before + 2


def test_a_malformed_limit_fails_at_start() -> None:
    with pytest.raises(ValueError):
        Quotas(Settings(api_keys=API_KEYS, tenant_limits={"t": {"rate_limit": "lots"}}), lambda _: 0)


def test_count_queued_counts_only_waiting_jobs_of_the_tenant(pg_session: Any) -> None:
    store.insert_jobs(
        pg_session,
        [
            store.NewJob("cq", "a", JobStatus.QUEUED),
            store.NewJob("cq", "b", JobStatus.DONE),
            store.NewJob("other", "c", JobStatus.QUEUED),
        ],
    )
    assert store.count_queued(pg_session, "cq") == 1
