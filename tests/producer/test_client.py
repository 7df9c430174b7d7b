"""The Python client over real HTTP, against the API served by uvicorn on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memeguard.runtime import Runtime
from memeguard.samples import render_meme
from memeguard.settings import Settings
from producer.api import create_app
from producer.client import Client, JobRef, MemeguardError
from producer.service import Submission
from tests.conftest import API_KEYS, serving
from tests.images import SVG, solid


@pytest.fixture
def base_url(tmp_path: Path, sqlite_url: str, embedded_analyzer) -> Iterator[str]:  # type: ignore[no-untyped-def]
    runtime = Runtime(Settings(data_dir=tmp_path, database_url=sqlite_url, api_keys=API_KEYS))
    runtime.analyzer = embedded_analyzer
    with serving(create_app(runtime)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[Client]:
    with Client(base_url, API_KEYS["tenant-a"], tenant="tenant-a") as c:
        yield c


def test_submit_is_idempotent_and_get_returns_the_verdict(client: Client) -> None:
    meme = render_meme("你说得对，但是我不听", "doge")
    first = client.submit(meme, "post-1", post_text="手动狗头", context={"scene": "评论"})
    again = client.submit(meme, "post-1", post_text="手动狗头")
    assert first.created and not again.created and first.job_id == again.job_id
    job = client.get(first.job_id)
    assert job["status"] == "done" and job["verdict"]["intent"] == "sarcasm"


def test_rejection_raises_with_the_code(client: Client) -> None:
    with pytest.raises(MemeguardError) as info:
        client.submit(SVG, "svg")
    assert (info.value.status, info.value.code) == (415, "unsupported_type") and info.value.job_id


def test_submit_many_returns_per_item_results(client: Client) -> None:
    results = client.submit_many([Submission(solid("PNG"), "a"), Submission(SVG, "b")])
    assert isinstance(results[0], JobRef)
    assert isinstance(results[1], MemeguardError) and results[1].code == "unsupported_type"
    assert results[1].status == 415


def test_stream_yields_a_result_per_item(client: Client) -> None:
    items = [Submission(render_meme(caption), f"s-{i}") for i, caption in enumerate(["早上好", "笑死我了"])]
    results = list(client.stream(items))
    assert sorted(r["content_id"] for r in results) == ["s-0", "s-1"]
    assert all(r["status"] == "done" and r["action"]["action"] for r in results)


def test_a_key_used_for_another_tenant_is_refused(base_url: str) -> None:
    with Client(base_url, API_KEYS["tenant-a"], tenant="tenant-b") as wrong, pytest.raises(MemeguardError) as info:
        wrong.submit(solid("PNG"), "x")
    assert (info.value.status, info.value.code) == (403, "tenant_mismatch")
    with Client(base_url, API_KEYS["tenant-a"]) as plain, pytest.raises(MemeguardError) as info:
        plain.submit(solid("PNG"), "x", tenant="tenant-b")
    assert info.value.code == "tenant_mismatch"


def test_bad_key_is_unauthorized(base_url: str) -> None:
    with Client(base_url, "z" * 30) as bad, pytest.raises(MemeguardError) as info:
        bad.get("00000000-0000-0000-0000-000000000000")
    assert (info.value.status, info.value.code) == (401, "unauthorized")
