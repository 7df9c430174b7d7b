"""The fleet for real: API -> Redis -> `memeguard worker` processes -> PostgreSQL.

These tests start real worker processes (prefork pool) against the real Redis and a fresh PostgreSQL
database, and one of them kills a worker with SIGKILL in the middle of a job.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from composition.runtime import Runtime
from jobs import store
from memeguard.db import make_engine, make_sessions
from memeguard.schemas import JobStatus
from memeguard.settings import Settings
from producer.api import create_app
from tests.helpers.services import API_KEYS, RABBITMQ_URL, REDIS_URL, create_pg_database, drop_pg_database, free_port
from worker.samples import render_meme

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEYS['tenant-a']}"}
CAPTIONS = [
    "你说得对，但是我不听",
    "前方高能预警",
    "我破防了",
    "你个sb",
    "早上好",
    "不想活了",
    "笑死我了",
    "你认真的？",
]


BROKERS = {"redis": REDIS_URL, "rabbitmq": RABBITMQ_URL}


@pytest.fixture(scope="module", params=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> str:
    """Each fleet test runs on each supported broker: Redis, and RabbitMQ with quorum queues."""
    return BROKERS[request.param]


@pytest.fixture(scope="module")
def fleet_db(broker: str) -> Iterator[str]:
    """One database per broker: the tests of one broker share it (and its verdict cache), never another's."""
    url = create_pg_database("memeguard_fleet")
    yield url
    drop_pg_database(url)


def delete_queues(broker_url: str, *names: str) -> None:
    """Leave no test queue behind on the shared broker."""
    if broker_url.startswith("redis"):
        redis.Redis.from_url(broker_url).delete(*names)
        return
    from kombu import Connection

    with Connection(broker_url) as conn:
        for name in names:
            conn.default_channel.queue_delete(name)


def is_quorum_queue(broker_url: str, name: str) -> bool:
    """RabbitMQ refuses to re-declare a queue with another type: declaring ours as classic fails if (and only
    if) it is a quorum queue."""
    from amqp.exceptions import PreconditionFailed
    from kombu import Connection

    with Connection(broker_url) as conn:
        try:
            conn.channel().queue_declare(name, durable=True, arguments={"x-queue-type": "classic"})
        except PreconditionFailed:
            return True
    return False


@pytest.fixture
def env(broker: str, fleet_db: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    queue = f"memeguard.test.{uuid.uuid4().hex[:8]}"
    values = {
        "MEMEGUARD_DATABASE_URL": fleet_db,
        "MEMEGUARD_BROKER_URL": broker,
        "MEMEGUARD_QUEUE_NAME": queue,
        "MEMEGUARD_BLOB_STORE": str(tmp_path / "blobs"),
        "MEMEGUARD_ANALYZER": "embedded",
        "MEMEGUARD_VISIBILITY_TIMEOUT_S": "3",
        "MEMEGUARD_REDELIVERY_CHECK_S": "1",
        "MEMEGUARD_WORKER_OPS_PORT": str(free_port()),
        "MEMEGUARD_API_KEYS": json.dumps(API_KEYS),
        "MEMEGUARD_DATA_DIR": str(tmp_path),
    }
    yield values
    delete_queues(broker, queue)


class Worker:
    """A `memeguard worker` process in its own process group, so SIGKILL takes the pool children too."""

    def __init__(self, env: dict[str, str], log: Path, name: str, pool: str = "prefork") -> None:
        self.log, self.port = log, int(env["MEMEGUARD_WORKER_OPS_PORT"])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "composition.cli", "worker", "-c", "1", "-P", pool, "-n", f"{name}@%h"],
            env={**os.environ, **env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]
            if b"ready." in self.log.read_bytes():
                return
            time.sleep(0.1)
        raise AssertionError(f"worker not ready:\n{self.log.read_text(errors='replace')[-3000:]}")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)


def api_client(env: dict[str, str]) -> tuple[TestClient, Runtime]:
    values = {
        k.removeprefix("MEMEGUARD_").lower(): json.loads(v) if v.startswith(("{", "[")) else v for k, v in env.items()
    }
    settings = Settings(**values)
    runtime = Runtime(settings)
    return TestClient(create_app(runtime)), runtime


def submit_all(client: TestClient, prefix: str, suffix: str = "") -> list[str]:
    ids = []
    for i, caption in enumerate(CAPTIONS):
        response = client.post(
            "/v1/jobs",
            headers=AUTH,
            data={"content_id": f"{prefix}-{i}"},
            files={"image": ("m.png", render_meme(caption + suffix, "doge"), "image/png")},
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["job_id"])
    return ids


def wait_all_done(client: TestClient, job_ids: list[str], timeout: float) -> list[dict]:  # type: ignore[type-arg]
    """Poll as a platform would: a 429 or 503 (the API's answer under load) is waited out as its Retry-After
    says; any other refusal fails the test with its body."""
    deadline = time.monotonic() + timeout
    jobs: list[dict] = []  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        answers = [client.get(f"/v1/jobs/{j}", headers=AUTH) for j in job_ids]
        if busy := [a for a in answers if a.status_code in (429, 503)]:
            time.sleep(float(busy[0].headers.get("Retry-After", "1")))
            continue
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
        jobs = [a.json() for a in answers]
        if all(j["status"] in ("done", "failed") for j in jobs):
            return jobs
        time.sleep(0.2)
    raise AssertionError(f"not done in {timeout}s: {[j.get('status') for j in jobs]}")


def test_api_to_broker_to_worker_to_postgres(env: dict[str, str], tmp_path: Path) -> None:
    client, runtime = api_client(env)
    worker = Worker(env, tmp_path / "worker.log", "w1")
    try:
        job_ids = submit_all(client, "fleet")
        jobs = wait_all_done(client, job_ids, timeout=90)
        assert [j["status"] for j in jobs] == ["done"] * len(CAPTIONS)
        assert all(j["verdict"]["ocr_text"] and j["action"]["policy"] == "default@3" for j in jobs)
        assert jobs[3]["action"]["action"] in ("block", "tag")  # 你个sb
        assert "queue_wait_ms" in jobs[0]["timings"] and "store_ms" not in jobs[0]["timings"]
        metrics = worker.get("/metrics").text
        assert 'memeguard_jobs_total{status="done",tenant="tenant-a"} 8.0' in metrics
        assert 'memeguard_stage_seconds_count{stage="ocr"} 8.0' in metrics
        assert 'memeguard_stage_seconds_count{stage="validate"}' not in metrics
        assert f'memeguard_queue_depth{{queue="{env["MEMEGUARD_QUEUE_NAME"]}"}} 0.0' in metrics
        assert worker.get("/readyz").json()["ready"] is True
        logged = [
            json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines() if line.startswith("{")
        ]
        assert {r["job_id"] for r in logged if r.get("message") == "job done"} == set(job_ids)
        assert client.get("/readyz").json()["checks"]["broker"] == "ok"
        if env["MEMEGUARD_BROKER_URL"].startswith("amqp"):
            assert is_quorum_queue(env["MEMEGUARD_BROKER_URL"], env["MEMEGUARD_QUEUE_NAME"])
        _stream_through_the_fleet(client)
    finally:
        worker.stop()
        runtime.sessions.kw["bind"].dispose()


def _stream_through_the_fleet(client: TestClient) -> None:
    """NDJSON in, one finished result per item out, each analysed by the worker process."""
    lines = [
        json.dumps({"content_id": f"stream-{i}", "image_base64": base64.b64encode(render_meme(c)).decode()})
        for i, c in enumerate(["早上好", "你个sb"])
    ]
    response = client.post(
        "/v1/jobs:stream", headers={**AUTH, "Content-Type": "application/x-ndjson"}, content="\n".join(lines).encode()
    )
    results = {r["content_id"]: r for r in map(json.loads, response.text.splitlines())}
    assert set(results) == {"stream-0", "stream-1"}
    assert all(r["status"] == "done" and not r["timeout"] for r in results.values())
    assert results["stream-1"]["action"]["action"] in ("block", "tag")


def test_kill_9_mid_job_every_job_ends_done_exactly_once(env: dict[str, str], tmp_path: Path) -> None:
    client, _ = api_client(env)
    sessions = make_sessions(make_engine(env["MEMEGUARD_DATABASE_URL"]))
    job_ids = [uuid.UUID(j) for j in submit_all(client, f"kill-{uuid.uuid4().hex[:6]}")]
    victims = _kill_mid_job(env, tmp_path, sessions, job_ids)
    second = Worker(env, tmp_path / "w-final.log", "w-final")
    try:
        jobs = wait_all_done(client, [str(j) for j in job_ids], timeout=120)
    finally:
        second.stop()
    assert [j["status"] for j in jobs] == ["done"] * len(CAPTIONS)
    with sessions() as session:
        for job_id in job_ids:
            assert store.count_verdicts(session, job_id) == (1, 1), job_id
        for victim in victims:
            job = store.get_job(session, victim)
            assert job is not None and job.attempts >= 2 and store.audit_events(session, victim) == []


def _statuses(sessions, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, JobStatus]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return {j: job.status for j in job_ids if (job := store.get_job(session, j))}


def _kill_mid_job(env: dict[str, str], tmp_path: Path, sessions, job_ids: list[uuid.UUID]) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    """Start a worker and SIGKILL its process group while a job is running. Which jobs were mid-job is read
    from the database after the kill (a job seen running may commit in the instant before the signal), and
    the kill is repeated with a fresh worker if, by chance, none was."""
    for attempt in range(4):
        worker = Worker(env, tmp_path / f"w{attempt}.log", f"w{attempt}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if JobStatus.RUNNING in _statuses(sessions, job_ids).values():
                break
            time.sleep(0.02)
        worker.kill9()
        victims = [j for j, status in _statuses(sessions, job_ids).items() if status is JobStatus.RUNNING]
        if victims:
            return victims
    raise AssertionError("never killed a worker in the middle of a job")


def test_a_gpu_worker_reads_a_batch_of_jobs_in_one_forward_pass(env: dict[str, str], tmp_path: Path) -> None:
    """The GPU tier's real Celery path: `memeguard worker -P solo` with MEMEGUARD_ANALYZER=vlm on the tiny
    GLM-4.6V; jobs queued before it starts arrive as one celery-batches batch and share one forward pass."""
    pytest.importorskip("torch", reason="needs the vlm extra")
    from worker.vlm import synthetic

    model_dir = synthetic.build(tmp_path / "glm46v-tiny")
    gpu_env = {
        **env,
        "MEMEGUARD_ANALYZER": "vlm",
        "MEMEGUARD_VLM_MODEL": str(model_dir),
        "MEMEGUARD_VLM_DEVICE": "cpu",
        "MEMEGUARD_WORKER_BATCH_SIZE": "8",
        "MEMEGUARD_WORKER_BATCH_WAIT_MS": "2000",
    }
    refused = subprocess.run(
        [sys.executable, "-m", "composition.cli", "worker", "-P", "prefork"],
        env={**os.environ, **gpu_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "must not fork" in refused.stderr
    client, _ = api_client(gpu_env)
    job_ids = submit_all(client, "gpu")  # queued before any worker runs
    worker = Worker(gpu_env, tmp_path / "gpu-worker.log", "gpu", pool="solo")
    try:
        jobs = wait_all_done(client, job_ids, timeout=120)
    finally:
        worker.stop()
    assert [j["status"] for j in jobs] == ["done"] * len(CAPTIONS)
    assert {j["verdict"]["analyzer"] for j in jobs} == {"vlm"}
    shares = [j["timings"]["vlm_fast_ms"] for j in jobs]  # a batch's forward pass is shared out evenly
    assert max(shares.count(s) for s in shares) >= 4, shares


def test_a_two_queue_fleet_cpu_workers_hand_what_they_are_unsure_of_to_gpu_workers(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A CPU worker (prefork, cascade, no VLM loaded) and a GPU worker (solo, the tiny GLM-4.6V) on their own
    queues. Tenant A is pinned to the VLM, so every item is handed off: each reaches the GPU worker with the
    embedded tier's findings and ends done exactly once; a repeat of a finished meme is then reused by the
    CPU worker's fingerprint stage without either model."""
    pytest.importorskip("torch", reason="needs the vlm extra")
    from worker.vlm import synthetic

    vlm_queue = f"{env['MEMEGUARD_QUEUE_NAME']}.vlm"
    fleet = {
        **env,
        "MEMEGUARD_VLM_QUEUE": vlm_queue,
        "MEMEGUARD_TENANT_ANALYZERS": '{"tenant-a": "vlm"}',
        "MEMEGUARD_BANK_REFRESH_S": "0.2",
    }
    cpu_env = {**fleet, "MEMEGUARD_ANALYZER": "cascade"}
    gpu_env = {
        **fleet,
        "MEMEGUARD_ANALYZER": "vlm",
        "MEMEGUARD_VLM_MODEL": str(synthetic.build(tmp_path / "tiny")),
        "MEMEGUARD_VLM_DEVICE": "cpu",
        "MEMEGUARD_WORKER_OPS_PORT": str(free_port()),
    }
    client, runtime = api_client(fleet)
    workers = [Worker(cpu_env, tmp_path / "cpu.log", "cpu"), Worker(gpu_env, tmp_path / "gpu.log", "gpu", "solo")]
    try:
        # other captions than the other fleet tests': their verdicts of the same memes would be reused
        jobs = wait_all_done(client, submit_all(client, "two", "（转）"), timeout=180)
        assert [j["status"] for j in jobs] == ["done"] * len(CAPTIONS)
        for job in jobs:
            signals = {s["source"]: s for s in job["verdict"]["signals"]}
            assert job["verdict"]["analyzer"] == "vlm" and {"ocr", "kb", "vlm"} <= set(signals)
            assert (
                f"pinned to the VLM: escalated on a CPU worker, handed to {vlm_queue}"
                in signals["cascade"]["evidence"][0]
            )
        with runtime.sessions() as session:
            assert all(store.count_verdicts(session, uuid.UUID(j["job_id"])) == (1, 1) for j in jobs)
            events = [store.audit_events(session, uuid.UUID(j["job_id"])) for j in jobs]
            assert events == [["job.handed_off"]] * len(jobs)
        assert f'memeguard_queue_depth{{queue="{vlm_queue}"}} 0.0' in workers[0].get("/metrics").text
        assert 'memeguard_cascade_total{tier="handoff"} 8.0' in workers[0].get("/metrics").text
        repeat = client.post(
            "/v1/jobs",
            headers=AUTH,
            data={"content_id": "two-repeat"},
            files={"image": ("m.png", render_meme(CAPTIONS[0] + "（转）", "doge"), "image/png")},
        )
        [again] = wait_all_done(client, [repeat.json()["job_id"]], timeout=60)
        assert again["status"] == "done" and "reused verdict" in again["verdict"]["signals"][0]["evidence"][0]
    finally:
        for worker in workers:
            worker.stop()
        runtime.sessions.kw["bind"].dispose()
        delete_queues(env["MEMEGUARD_BROKER_URL"], vlm_queue)
