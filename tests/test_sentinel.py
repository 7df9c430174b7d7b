"""A broker that survives a node: Redis master + replica + three sentinels (started here, on loopback), a
real worker fleet reaching them through ``sentinel://``, and the master killed with SIGKILL under load.

Every accepted job must still end ``done`` exactly once: the sentinels promote the replica, kombu asks them
for the new master on reconnect, and what the failover dropped (a replica is asynchronous: the last writes may
never have reached it) is re-published from the database by the sweeper.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from composition.runtime import Runtime
from memeguard.broker import broker_redis
from memeguard.db import make_engine
from memeguard.settings import Settings
from producer.api import create_app
from producer.quotas import Quotas
from tests.helpers.images import solid
from tests.helpers.services import API_KEYS, create_pg_database, drop_pg_database, free_port

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEYS['tenant-a']}"}
MASTER = "memeguard-master"


class RedisNode:
    def __init__(self, workdir: Path, name: str, args: list[str]) -> None:
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.conf = workdir / f"{name}.conf"
        self.conf.write_text(
            f'port {self.port}\nbind 127.0.0.1\nsave ""\nappendonly no\ndir {workdir}\n' + "\n".join(args) + "\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("no redis-server (Debian's redis-server package)")
        self.proc = subprocess.Popen(
            [server, str(self.conf), *extra], stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(self.log.read_text(errors="replace")[-2000:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[tuple[RedisNode, RedisNode, list[RedisNode]]]:
    master = RedisNode(tmp_path, "master", [])
    master.start()
    replica = RedisNode(tmp_path, "replica", [f"replicaof 127.0.0.1 {master.port}"])
    replica.start()
    sentinels = [
        RedisNode(
            tmp_path,
            f"sentinel{i}",
            [
                f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 2",
                f"sentinel down-after-milliseconds {MASTER} 1000",
                f"sentinel failover-timeout {MASTER} 5000",
                f"sentinel parallel-syncs {MASTER} 1",
            ],
        )
        for i in range(3)
    ]
    for node in sentinels:
        node.start("--sentinel")
    yield master, replica, sentinels
    for node in (master, replica, *sentinels):
        node.kill()


def current_master(sentinels: list[RedisNode]) -> int:
    _host, port = redis.Redis(port=sentinels[0].port).sentinel_get_master_addr_by_name(MASTER)
    return int(port)


def test_every_job_ends_done_once_when_the_redis_master_dies(
    sentinel_set: tuple[RedisNode, RedisNode, list[RedisNode]], tmp_path: Path
) -> None:
    master, replica, sentinels = sentinel_set
    db_url = create_pg_database(f"memeguard_sentinel_{uuid.uuid4().hex[:6]}")
    broker = ";".join(f"sentinel://127.0.0.1:{node.port}" for node in sentinels)
    env = {
        "MEMEGUARD_DATABASE_URL": db_url,
        "MEMEGUARD_BROKER_URL": broker,
        "MEMEGUARD_BROKER_SENTINEL_MASTER": MASTER,
        "MEMEGUARD_QUEUE_NAME": "memeguard.sentinel",
        "MEMEGUARD_BLOB_STORE": str(tmp_path / "blobs"),
        "MEMEGUARD_ANALYZER": "noop",
        "MEMEGUARD_FINGERPRINTS": "false",
        "MEMEGUARD_VISIBILITY_TIMEOUT_S": "5",
        "MEMEGUARD_REDELIVERY_CHECK_S": "1",
        "MEMEGUARD_REQUEUE_AFTER_S": "5",
        "MEMEGUARD_SWEEP_EVERY_S": "2",
        "MEMEGUARD_BROKER_TIMEOUT_S": "2",
        "MEMEGUARD_WORKER_OPS_PORT": "0",
        "MEMEGUARD_API_KEYS": json.dumps(API_KEYS),
        "MEMEGUARD_DATA_DIR": str(tmp_path),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "composition.cli", "worker", "-c", "1", "-P", "solo", "--beat", "-n", "sentinel@%h"],
        env={**os.environ, **env},
        stdout=(tmp_path / "worker.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp_path,
    )
    settings = Settings(
        database_url=db_url,
        broker_url=broker,
        broker_sentinel_master=MASTER,
        queue_name="memeguard.sentinel",
        blob_store=str(tmp_path / "blobs"),
        api_keys=API_KEYS,
        data_dir=tmp_path,
        broker_timeout_s=2,
        rate_limit=None,
    )
    client = TestClient(create_app(Runtime(settings)))
    accepted: list[str] = []
    try:
        for n in range(60):
            if n == 20:
                master.kill()  # SIGKILL: no goodbye to the replica or the sentinels
            for _ in range(60):  # a platform retries 503 (uploads are idempotent by content id)
                answer = client.post(
                    "/v1/jobs",
                    headers=AUTH,
                    data={"content_id": f"s{n}"},
                    files={"image": ("m.png", solid("PNG", (64 + n, 48)), "image/png")},
                )
                if answer.status_code in (200, 201):
                    accepted.append(answer.json()["job_id"])
                    break
                assert answer.status_code == 503 and answer.json()["error"], answer.text
                time.sleep(0.5)
            time.sleep(0.05)
        assert current_master(sentinels) == replica.port  # the sentinels promoted the replica
        assert broker_redis(settings).ping()  # the GPU tier's queue-length client follows the failover too
        errors = REGISTRY.get_sample_value("memeguard_limiter_errors_total") or 0
        Quotas(settings.model_copy(update={"rate_limit": "1000/second"}), lambda _: 0).request("tenant-a")
        assert (REGISTRY.get_sample_value("memeguard_limiter_errors_total") or 0) == errors  # limits via Sentinel
        engine = make_engine(db_url)
        deadline, statuses = time.monotonic() + 120, {}
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                statuses = dict(conn.execute(sa.text("SELECT id::text, status FROM jobs")).all())
            if all(statuses.get(job) == "done" for job in accepted):
                break
            time.sleep(0.5)
        with engine.connect() as conn:
            verdicts = conn.execute(sa.text("SELECT count(*), count(DISTINCT job_id) FROM verdicts")).one()
            actions = conn.execute(sa.text("SELECT count(*) FROM actions WHERE source = 'policy'")).scalar_one()
        engine.dispose()
        assert len(accepted) == 60 and [statuses.get(job) for job in accepted] == ["done"] * 60, (
            tmp_path / "worker.log"
        ).read_text(errors="replace")[-3000:]
        assert tuple(verdicts) == (60, 60) and actions == 60  # exactly once
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        drop_pg_database(db_url)


def test_settings_read_the_sentinels_and_refuse_a_missing_master_name() -> None:
    settings = Settings(broker_url="sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380", broker_sentinel_master="m")
    assert settings.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    from producer.quotas import storage_uri

    assert storage_uri(settings) == "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/m"
    with pytest.raises(ValueError, match="SENTINEL_MASTER"):
        Settings(broker_url="sentinel://10.0.0.1:26379")
