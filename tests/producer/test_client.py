"""The Python client over real HTTP, against the API served by uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from composition.runtime import Runtime
from memeguard.settings import Settings
from producer.api import create_app
from producer.client import AsyncClient, Client, JobRef, MemeguardError, Retry, Upload
from producer.service import Submission
from tests.helpers.images import SVG, solid
from tests.helpers.services import API_KEYS, Platform, serving
from worker.samples import render_meme

ROOT = Path(__file__).resolve().parents[2]


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
    assert job.status == "done" and job.verdict is not None and job.verdict["intent"] == "sarcasm"
    assert job.action is not None and job.action.action in ("allow", "tag", "throttle", "block")
    assert client.find("post-1").job_id == first.job_id


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


def test_the_async_client_submits_streams_and_reads(base_url: str) -> None:
    async def run() -> tuple[JobRef, list[dict[str, object]], str]:
        async with AsyncClient(base_url, API_KEYS["tenant-a"]) as client:
            ref = await client.submit(solid("PNG"), "async-1")
            lines = [line async for line in client.stream([Upload(solid("PNG"), "async-2")])]
            return ref, lines, (await client.get(ref.job_id)).status

    ref, lines, status = asyncio.run(run())
    assert ref.created and status == "done"
    assert [line["content_id"] for line in lines] == ["async-2"]


def test_429_is_retried_after_the_servers_retry_after(tmp_path: Path, sqlite_url: str, embedded_analyzer) -> None:  # type: ignore[no-untyped-def]
    runtime = Runtime(Settings(data_dir=tmp_path, database_url=sqlite_url, api_keys=API_KEYS, rate_limit="2/second"))
    runtime.analyzer = embedded_analyzer
    before = REGISTRY.get_sample_value("memeguard_limited_total", {"tenant": "tenant-a", "limit": "requests"}) or 0
    with serving(create_app(runtime)) as url, Client(url, API_KEYS["tenant-a"]) as client:
        refs = [client.submit(solid("PNG"), f"r{n}") for n in range(5)]
        with (
            Client(url, API_KEYS["tenant-a"], retry=Retry(attempts=1)) as impatient,
            pytest.raises(MemeguardError) as info,
        ):
            for n in range(5):
                impatient.submit(solid("PNG"), f"i{n}")
    assert all(ref.created for ref in refs)  # every upload got through, some after waiting
    after = REGISTRY.get_sample_value("memeguard_limited_total", {"tenant": "tenant-a", "limit": "requests"}) or 0
    assert after > before
    assert info.value.code == "rate_limited" and info.value.status == 429 and info.value.retry_after_s


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return super().handle_request(request)


def test_connection_errors_are_retried_then_raised() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    transport = CountingTransport()
    quick = Retry(attempts=3, base_s=0.01)
    with (
        Client(f"http://127.0.0.1:{port}", "k" * 30, retry=quick, transport=transport) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get("00000000-0000-0000-0000-000000000000")
    assert transport.calls == 3


@pytest.mark.parametrize("platform", [[502]], indirect=True)
def test_an_error_body_that_is_not_the_apis_json_still_has_a_code(platform: Platform) -> None:
    """A proxy in front of the API answers 502 with no JSON: the exception still carries a code."""
    base = platform.url.rsplit("/hooks", 1)[0]
    with Client(base, "k" * 30, retry=Retry(attempts=1)) as client, pytest.raises(MemeguardError) as info:
        client.appeal("00000000-0000-0000-0000-000000000000")
    assert (info.value.status, info.value.code) == (502, "http_502")


def test_the_client_needs_only_httpx() -> None:
    """A platform installs httpx and this module: importing it must not pull memeguard's server side."""
    blocked = ["sqlalchemy", "PIL", "pydantic", "fastapi", "starlette", "celery", "redis", "memeguard", "worker"]
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}: raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import producer.client as c\n"
        "print(c.Client.__name__, c.AsyncClient.__name__, c.verify.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Client", "AsyncClient", "verify"]
