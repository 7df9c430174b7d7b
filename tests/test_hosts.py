"""Nothing needs a shared disk: the API, a CPU worker and a GPU-tier worker each on a "host" of its own.

Each host is a Linux network namespace with its own address on a bridge this test creates, and a mount
namespace in which a private tmpfs is the host's data directory (and temp directory): no host sees another's
files. PostgreSQL, Redis and the S3-protocol server are reached only over the bridge. Jobs submitted to the
API host go to the CPU worker host, are handed to the GPU worker host (the tiny GLM-4.6V, two-queue fleet),
and end done exactly once; the review console on the API host shows their images (read from the object
store); a worker host killed with kill -9 loses nothing. Where namespaces are not permitted, the test skips
and says why.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from memeguard.db import Role, make_engine, make_sessions
from review import users
from tests.helpers.services import API_KEYS, create_pg_database, drop_pg_database, free_port
from worker.samples import render_meme

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEYS['tenant-a']}"}
PRIVATE = "/var/lib/memeguard-host"  # every host mounts its own tmpfs here: its data and temp directory
CONSOLE_SECRET = "console-" + "s" * 40
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def why_no_namespaces() -> str | None:
    if os.geteuid() != 0:
        return "network and mount namespaces need root"
    if not (shutil.which("ip") and shutil.which("unshare")):
        return "needs iproute2's ip and util-linux's unshare"
    probe = f"mgprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@dataclass
class Network:
    bridge: str
    gateway: str  # the bridge's address: where the servers listen
    hosts: dict[str, tuple[str, str]]  # host name -> (namespace, address)


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    if (reason := why_no_namespaces()) is not None:
        pytest.skip(reason)
    tag, subnet = uuid.uuid4().hex[:5], f"10.{200 + os.getpid() % 50}.{int(uuid.uuid4().hex[:2], 16)}"
    bridge = f"mgbr{tag}"
    sh("ip", "link", "add", bridge, "type", "bridge")
    sh("ip", "addr", "add", f"{subnet}.1/24", "dev", bridge)
    sh("ip", "link", "set", bridge, "up")
    hosts = {}
    try:
        for number, name in enumerate(("api", "cpu", "gpu")):
            namespace, outside = f"mg-{name}-{tag}", f"mg{name}{tag}"
            address = f"{subnet}.{10 + number}"
            sh("ip", "netns", "add", namespace)
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            sh("ip", "link", "set", outside, "master", bridge, "up")
            sh("ip", "netns", "exec", namespace, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "netns", "exec", namespace, "ip", "link", "set", "eth0", "up")
            sh("ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up")
            hosts[name] = (namespace, address)
        yield Network(bridge, f"{subnet}.1", hosts)
    finally:
        for namespace, _ in hosts.values():
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


class Forward:
    """A TCP forwarder on the bridge to the machine's PostgreSQL (which listens on loopback only): the hosts
    reach the database over the bridge, as they would a database server."""

    def __init__(self, listen: str, target: tuple[str, int]) -> None:
        self.port, self.target = free_port(), target
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve() -> None:
            await asyncio.start_server(self._pipe, listen, self.port)
            ready.set()

        threading.Thread(
            target=lambda: (self.loop.run_until_complete(serve()), self.loop.run_forever()), daemon=True
        ).start()
        assert ready.wait(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(copy(reader, upstream_writer), copy(upstream_reader, writer), return_exceptions=True)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


class Host:
    """A memeguard process on one host: its network namespace, a private tmpfs as data and temp directory."""

    def __init__(self, network: Network, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.namespace, self.address = network.hosts[name]
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        script = f'mount -t tmpfs -o size=512m tmpfs {PRIVATE} && mkdir -p {PRIVATE}/tmp && exec "$@"'
        env = {**os.environ, **self.env, "MEMEGUARD_DATA_DIR": PRIVATE, "TMPDIR": f"{PRIVATE}/tmp"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.namespace,
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
                "sh",
                sys.executable,
                "-m",
                "composition.cli",
                *self.args,
            ],
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_log(self, marker: bytes, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            if marker in self.log.read_bytes():
                return
            time.sleep(0.2)
        raise AssertionError(self.tail())

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()


def running_on_gpu(db_url: str, job_ids: list[str], timeout: float) -> bool:
    """Wait until one of the jobs is running on the GPU tier (handed off, then claimed); False if none was
    seen in time (the kill then hits a worker between jobs, which must lose nothing either)."""
    engine = make_engine(db_url)
    deadline = time.monotonic() + timeout
    query = sa.text(
        "SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND status = 'running' AND handed_off_at IS NOT NULL"
    )
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(query, {"ids": [uuid.UUID(j) for j in job_ids]}).scalar_one():
                    return True
            time.sleep(0.05)
        return False
    finally:
        engine.dispose()


def wait_done(api: httpx.Client, job_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    jobs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        answers = [api.get(f"/v1/jobs/{j}", headers=AUTH) for j in job_ids]
        if busy := [a for a in answers if a.status_code in (429, 503)]:  # under load: wait as it says
            time.sleep(float(busy[0].headers.get("Retry-After", "1")))
            continue
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
        jobs = [a.json() for a in answers]
        if all(j["status"] in ("done", "failed") for j in jobs):
            return jobs
        time.sleep(0.5)
    raise AssertionError(f"not done: {[j.get('status') for j in jobs]}")


def test_api_cpu_and_gpu_hosts_share_no_disk(network: Network, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the GPU-tier host runs the tiny GLM-4.6V (vlm extra)")
    from moto.server import ThreadedMotoServer

    from worker.vlm import synthetic

    Path(PRIVATE).mkdir(parents=True, exist_ok=True)
    gateway = network.gateway
    redis_port, s3_port = free_port(), free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            gateway,
            "--port",
            str(redis_port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ],
        stdout=(tmp_path / "redis.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    s3 = ThreadedMotoServer(ip_address=gateway, port=s3_port, verbose=False)
    s3.start()
    db_url = create_pg_database("memeguard_hosts")
    database = sa.engine.make_url(db_url)
    postgres = Forward(gateway, (database.host or "127.0.0.1", database.port or 5432))
    hosts: list[Host] = []
    try:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=f"http://{gateway}:{s3_port}",
            region_name="us-east-1",
            aws_access_key_id="hosts",
            aws_secret_access_key="hosts",
        ).create_bucket(Bucket="memeguard")
        with make_sessions(make_engine(db_url))() as session:
            users.add_user(session, "ann", PASSWORD, Role.REVIEWER, ["tenant-a"], actor="test")
            session.commit()
        queue = f"memeguard.hosts.{uuid.uuid4().hex[:6]}"
        common = {
            "MEMEGUARD_DATABASE_URL": database.set(host=gateway, port=postgres.port).render_as_string(False),
            "MEMEGUARD_BROKER_URL": f"redis://{gateway}:{redis_port}/0",
            "MEMEGUARD_QUEUE_NAME": queue,
            "MEMEGUARD_VLM_QUEUE": f"{queue}.vlm",
            "MEMEGUARD_TENANT_ANALYZERS": '{"tenant-a": "vlm"}',
            "MEMEGUARD_BLOB_STORE": "s3://memeguard/images",
            "MEMEGUARD_BLOB_S3_ENDPOINT_URL": f"http://{gateway}:{s3_port}",
            "MEMEGUARD_BLOB_S3_PATH_STYLE": "true",
            "MEMEGUARD_BLOB_S3_ACCESS_KEY_ID": "hosts",
            "MEMEGUARD_BLOB_S3_SECRET_ACCESS_KEY": "hosts",
            "MEMEGUARD_API_KEYS": json.dumps(API_KEYS),
            "MEMEGUARD_CONSOLE_SECRET": CONSOLE_SECRET,
            "MEMEGUARD_CONSOLE_SECURE_COOKIES": "false",
            "MEMEGUARD_VISIBILITY_TIMEOUT_S": "5",
            "MEMEGUARD_REDELIVERY_CHECK_S": "1",
            # the sweeper is the safety net for a message a killed worker held: a kill -9 mid-batch left one of
            # two hand-offs queued with no message (2026-12-03); the sweeper re-publishes it
            "MEMEGUARD_REQUEUE_AFTER_S": "20",
            "MEMEGUARD_SWEEP_EVERY_S": "5",
            "MEMEGUARD_WORKER_OPS_PORT": "9108",
            "MEMEGUARD_CALLBACK_ALLOW": "[]",
            "MEMEGUARD_CALLBACK_HTTP_TENANTS": "[]",
        }
        model = synthetic.build(tmp_path / "glm46v-tiny")  # read-only weights, as a model volume would be
        api = Host(
            network, "api", ["api", "--host", network.hosts["api"][1], "--port", "8000"], common, tmp_path / "api.log"
        )
        cpu = Host(
            network,
            "cpu",
            ["worker", "-c", "1", "-P", "solo", "--beat", "-n", "cpu@%h"],
            {**common, "MEMEGUARD_ANALYZER": "cascade"},
            tmp_path / "cpu.log",
        )
        gpu = Host(
            network,
            "gpu",
            ["worker", "-c", "1", "-P", "solo", "-n", "gpu@%h"],
            {**common, "MEMEGUARD_ANALYZER": "vlm", "MEMEGUARD_VLM_MODEL": str(model), "MEMEGUARD_VLM_DEVICE": "cpu"},
            tmp_path / "gpu.log",
        )
        hosts = [api, cpu, gpu]
        for host in hosts:
            host.start()
        api.wait_log(b"Uvicorn running")
        cpu.wait_log(b"ready.")
        gpu.wait_log(b"ready.")
        client = httpx.Client(base_url=f"http://{network.hosts['api'][1]}:8000", timeout=30)
        images = {
            f"host-{n}": render_meme(caption, "doge")
            for n, caption in enumerate(["你说得对，但是我不听", "前方高能预警", "早上好", "我破防了"])
        }

        def submit(content_ids: list[str]) -> list[str]:
            answers = [
                client.post(
                    "/v1/jobs", headers=AUTH, data={"content_id": c}, files={"image": ("m.png", images[c], "image/png")}
                )
                for c in content_ids
            ]
            assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
            return [a.json()["job_id"] for a in answers]

        first = submit(["host-0", "host-1"])
        jobs = wait_done(client, first, timeout=120)
        second = submit(["host-2", "host-3"])
        running_on_gpu(db_url, second, timeout=30)
        gpu.kill9()  # the GPU host dies mid-job; its replacement starts with an empty disk
        gpu.start()
        gpu.wait_log(b"ready.", timeout=120)
        jobs += wait_done(client, second, timeout=180)
        assert [j["status"] for j in jobs] == ["done"] * 4, cpu.tail() + gpu.tail()
        assert {j["verdict"]["analyzer"] for j in jobs} == {"vlm"}  # read on the GPU host after the hand-off
        with make_engine(db_url).connect() as conn:
            counts = conn.execute(sa.text("SELECT count(*), count(DISTINCT job_id) FROM verdicts")).one()
        assert tuple(counts) == (4, 4)  # exactly once

        form = client.get("/review/login")
        token = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
        assert (
            client.post(
                "/review/login", data={"username": "ann", "password": PASSWORD, "csrf": token}, follow_redirects=False
            ).status_code
            == 303
        )
        for job in jobs:
            shown = client.get(f"/review/item/{job['job_id']}/image")
            assert shown.status_code == 200 and shown.content == images[job["content_id"]]
        assert not any(Path(PRIVATE).iterdir())  # the hosts' files stayed in their own mount namespaces
    finally:
        for host in hosts:
            host.stop()
        redis.kill()
        s3.stop()
        postgres.stop()
        drop_pg_database(db_url)
