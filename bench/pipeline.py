"""Fleet overhead benchmark: API (uvicorn) -> Redis -> `memeguard worker` -> PostgreSQL, no-op analyzer.

Phases, all in one run so the ratios are comparable on a noisy machine:
  latency     sequential single submissions (POST /v1/jobs), no load: client POST time + the pipeline's
              own created->finished time from the database = per-job overhead (p50/p95)
  throughput  many jobs through POST /v1/jobs:batch from concurrent clients; jobs/s until all are done,
              and the CPU milliseconds the API + worker processes spent per job
  analyze     `memeguard analyze` wall time per meme (a fresh process) and in-process embedded analysis

Side by side, in one run: ``--brokers redis,rabbitmq`` (RabbitMQ with quorum queues) and
``--blob-stores local,s3`` (boto3 against moto's S3 server on loopback) run the same phases on each fleet.

Needs PostgreSQL and Redis (the same URLs as the tests; RabbitMQ for --brokers rabbitmq). Prints a table;
--json PATH writes the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from base64 import b64encode
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memeguard.migrate import upgrade  # noqa: E402
from worker.samples import DEMO_MEMES, render_meme  # noqa: E402

PG_ADMIN = os.environ.get("MEMEGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("MEMEGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY = "bench-" + "k" * 24


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of every live process in a process group (prefork children included)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Fleet:
    def __init__(
        self,
        workers: int,
        concurrency: int,
        pool: str,
        api_workers: int,
        worker_batch: int,
        data: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.db = f"memeguard_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.db}"'))
        self.url = sa.engine.make_url(PG_ADMIN).set(database=self.db).render_as_string(hide_password=False)
        upgrade(self.url)
        self.port = free_port()
        self.env = {
            **os.environ,
            "MEMEGUARD_DATABASE_URL": self.url,
            "MEMEGUARD_BROKER_URL": REDIS,
            "MEMEGUARD_QUEUE_NAME": f"memeguard.bench.{self.db}",
            "MEMEGUARD_ANALYZER": "noop",
            "MEMEGUARD_FINGERPRINTS": "false",  # fleet overhead only; bench/repeats.py measures hashing
            "MEMEGUARD_BLOB_STORE": str(data / "blobs"),
            "MEMEGUARD_API_KEYS": json.dumps({"bench": KEY}),
            "MEMEGUARD_LOG_LEVEL": "WARNING",
            "MEMEGUARD_WORKER_OPS_PORT": "0",
            "MEMEGUARD_WORKER_BATCH_SIZE": str(worker_batch),
            **(extra_env or {}),
        }
        self.procs = [self._spawn(["api", "--port", str(self.port), "--workers", str(api_workers)], data / "api.log")]
        self.procs += [
            self._spawn(["worker", "-c", str(concurrency), "-P", pool, "-n", f"b{i}@%h"], data / f"w{i}.log")
            for i in range(workers)
        ]
        self._wait_ready(data)

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "composition.cli", *args],
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_ready(self, data: Path) -> None:
        """Ready = the API answers and one warm-up job has gone all the way through a worker."""
        deadline = time.monotonic() + 90
        engine = sa.create_engine(self.url)
        submitted = False
        while time.monotonic() < deadline:
            try:
                if not submitted:
                    httpx.post(
                        f"http://127.0.0.1:{self.port}/v1/jobs",
                        headers={"Authorization": f"Bearer {KEY}"},
                        data={"content_id": "warm-up"},
                        files={"image": ("m.png", render_meme("早"))},
                    )
                    submitted = True
                if self.done_count(engine) >= 1:
                    engine.dispose()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("fleet did not start; see logs in " + str(data))

    def cpu_s(self) -> tuple[float, float]:
        """(API, workers) CPU seconds so far."""
        return group_cpu_s(self.procs[0].pid), sum(group_cpu_s(p.pid) for p in self.procs[1:])

    def done_count(self, engine: sa.Engine) -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM jobs WHERE status = 'done'")).scalar_one())

    def close(self) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'))


def wait_done(engine: sa.Engine, job_id: str) -> None:
    query = sa.text("SELECT status FROM jobs WHERE id = :id")
    with engine.connect() as conn:
        while conn.execute(query, {"id": job_id}).scalar_one() != "done":
            conn.rollback()
            time.sleep(0.002)


def latency_phase(fleet: Fleet, engine: sa.Engine, n: int) -> dict[str, float]:
    image = render_meme("早上好", size=(320, 240))
    client = httpx.Client(base_url=f"http://127.0.0.1:{fleet.port}", headers={"Authorization": f"Bearer {KEY}"})
    posts, ids = [], []
    for i in range(n):
        started = time.perf_counter()
        response = client.post("/v1/jobs", data={"content_id": f"lat-{i}"}, files={"image": ("m.png", image)})
        posts.append((time.perf_counter() - started) * 1000)
        ids.append(response.json()["job_id"])
        wait_done(engine, ids[-1])
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT created_at, finished_at FROM jobs WHERE content_id LIKE 'lat-%'")).all()
    pipeline = [(f - c).total_seconds() * 1000 for c, f in rows]
    total = [p + q for p, q in zip(sorted(posts), sorted(pipeline), strict=True)]
    return {
        "post_p50_ms": pct(posts, 0.5),
        "pipeline_p50_ms": pct(pipeline, 0.5),
        "overhead_p50_ms": pct(total, 0.5),
        "overhead_p95_ms": pct(total, 0.95),
    }


def throughput_phase(fleet: Fleet, engine: sa.Engine, n: int, batch: int, clients: int) -> dict[str, float]:
    image = b64encode(render_meme("早上好", size=(320, 240))).decode()
    batches = [[{"content_id": f"tp-{b}-{i}", "image_base64": image} for i in range(batch)] for b in range(n // batch)]
    already = fleet.done_count(engine)

    def send(items: list[dict[str, str]]) -> None:
        response = httpx.post(
            f"http://127.0.0.1:{fleet.port}/v1/jobs:batch",
            json={"items": items},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=120,
        )
        assert response.json()["accepted"] == len(items), response.text[:500]

    cpu_before, started = fleet.cpu_s(), time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, batches))
    submitted_s = time.perf_counter() - started
    total = len(batches) * batch
    while fleet.done_count(engine) < already + total:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    (api_after, workers_after), (api_before, workers_before) = fleet.cpu_s(), cpu_before
    api_ms, worker_ms = (api_after - api_before) * 1000 / total, (workers_after - workers_before) * 1000 / total
    return {
        "jobs": total,
        "jobs_per_s": total / elapsed,
        "submit_per_s": total / submitted_s,
        "cpu_ms_per_job": api_ms + worker_ms,
        "api_cpu_ms_per_job": api_ms,
        "worker_cpu_ms_per_job": worker_ms,
        "elapsed_s": elapsed,
    }


def analyze_phase(samples: int, data: Path) -> dict[str, float]:
    from memeguard.imaging import decode_frames
    from worker.analyzers import AnalysisInput, build_analyzer

    paths = []
    for meme in DEMO_MEMES[:samples]:
        path = data / f"{meme.content_id}.png"
        path.write_bytes(meme.image())
        paths.append(path)
    walls = []
    for path in paths:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "composition.cli", "analyze", str(path), "--json"],
            check=True,
            capture_output=True,
            env={**os.environ, "MEMEGUARD_DATA_DIR": str(data)},
        )
        walls.append((time.perf_counter() - started) * 1000)
    analyzer = build_analyzer("embedded")
    inproc = []
    for path in paths * 3:
        frames = decode_frames(path.read_bytes(), 8)
        started = time.perf_counter()
        analyzer.analyze(AnalysisInput(frames, ""))
        inproc.append((time.perf_counter() - started) * 1000)
    return {
        "cli_wall_p50_ms": pct(walls, 0.5),
        "cli_wall_p95_ms": pct(walls, 0.95),
        "inproc_p50_ms": pct(inproc, 0.5),
        "inproc_p95_ms": pct(inproc, 0.95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--pool", default="solo", choices=["prefork", "solo", "threads"])
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--worker-batch", type=int, default=32, help="MEMEGUARD_WORKER_BATCH_SIZE")
    parser.add_argument("--analyze-samples", type=int, default=8)
    parser.add_argument(
        "--brokers",
        default="redis",
        help="comma-separated: redis, rabbitmq (quorum queues, "
        "MEMEGUARD_TEST_RABBITMQ_URL); with several, each runs the same phases",
    )
    parser.add_argument(
        "--blob-stores",
        default="local",
        help="comma-separated: local, s3 (boto3 against moto's S3 server on loopback); with both, "
        "the same phases run on each and the ratio is reported",
    )
    parser.add_argument("--json", type=Path, dest="json_path")
    args = parser.parse_args()
    data = Path(os.environ.get("TMPDIR", "/tmp")) / f"memeguard-bench-{uuid.uuid4().hex[:6]}"
    data.mkdir(parents=True)
    runs = {}
    for broker in args.brokers.split(","):
        for store in args.blob_stores.split(","):
            with blob_store_env(store, data) as extra:
                name = store if args.brokers == "redis" else f"{broker}+{store}"
                runs[name] = run_fleet(args, data, {**extra, "MEMEGUARD_BROKER_URL": BROKER_URLS[broker]})
    analyze = analyze_phase(args.analyze_samples, data)
    first = next(iter(runs))
    report(args, runs[first][0], runs[first][1], analyze, runs)


BROKER_URLS = {
    "redis": REDIS,
    "rabbitmq": os.environ.get("MEMEGUARD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}


def run_fleet(args: argparse.Namespace, data: Path, extra: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """The latency and throughput phases on a fleet started with ``extra`` settings."""
    fleet = Fleet(args.workers, args.concurrency, args.pool, args.api_workers, args.worker_batch, data, extra)
    engine = sa.create_engine(fleet.url)
    try:
        return (
            latency_phase(fleet, engine, args.latency_jobs),
            throughput_phase(fleet, engine, args.jobs, args.batch, args.clients),
        )
    finally:
        engine.dispose()
        fleet.close()


@contextmanager
def blob_store_env(store: str, data: Path) -> Iterator[dict[str, str]]:
    """The fleet's blob-store settings: a local directory, or an S3 bucket on a moto server started here."""
    if store == "local":
        yield {}
        return
    if store != "s3":
        raise SystemExit(f"unknown blob store {store!r}: local or s3")
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint, bucket = f"http://127.0.0.1:{port}", f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket=bucket)
        yield {
            "MEMEGUARD_BLOB_STORE": f"s3://{bucket}/images",
            "MEMEGUARD_BLOB_S3_ENDPOINT_URL": endpoint,
            "MEMEGUARD_BLOB_S3_PATH_STYLE": "true",
            "MEMEGUARD_BLOB_S3_ACCESS_KEY_ID": "bench",
            "MEMEGUARD_BLOB_S3_SECRET_ACCESS_KEY": "bench",
        }
    finally:
        server.stop()


def report(
    args: argparse.Namespace,
    latency: dict[str, float],
    throughput: dict[str, float],
    analyze: dict[str, float],
    runs: dict[str, tuple[dict[str, float], dict[str, float]]],
) -> None:
    hardware = (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_implementation()} "
        f"{platform.python_version()}"
    )
    rows = [
        ("per-job overhead p50 (POST + pipeline, idle)", f"{latency['overhead_p50_ms']:.2f} ms", "<= 5 ms"),
        ("per-job overhead p95", f"{latency['overhead_p95_ms']:.2f} ms", ""),
        ("  of which POST /v1/jobs p50", f"{latency['post_p50_ms']:.2f} ms", ""),
        ("  of which created -> done p50", f"{latency['pipeline_p50_ms']:.2f} ms", ""),
        (f"throughput, {throughput['jobs']:.0f} jobs via :batch", f"{throughput['jobs_per_s']:.0f} jobs/s", ">= 300"),
        ("  submission rate", f"{throughput['submit_per_s']:.0f} jobs/s", ""),
        (
            "  CPU per job, API + workers",
            f"{throughput['api_cpu_ms_per_job']:.2f} + {throughput['worker_cpu_ms_per_job']:.2f} ms",
            "",
        ),
        ("memeguard analyze, wall per meme p50 (new process)", f"{analyze['cli_wall_p50_ms']:.0f} ms", ""),
        (
            "embedded analyzer in-process p50 / p95",
            f"{analyze['inproc_p50_ms']:.0f} / {analyze['inproc_p95_ms']:.0f} ms",
            "",
        ),
    ]
    print(f"memeguard pipeline benchmark — {hardware}")
    print(
        f"api processes={args.api_workers} workers={args.workers} pool={args.pool} "
        f"concurrency={args.concurrency} clients={args.clients} batch={args.batch} "
        f"worker batch={args.worker_batch}"
    )
    width = max(len(r[0]) for r in rows) + 2
    for name, value, target in rows:
        print(f"{name:<{width}}{value:>16}   {target}")
    compared = {}
    if len(runs) > 1:
        print("fleet             overhead p50   jobs/s   CPU/job API + workers")
        for name, (lat, thr) in runs.items():
            cpu = thr["api_cpu_ms_per_job"] + thr["worker_cpu_ms_per_job"]
            compared[name] = {
                "overhead_p50_ms": lat["overhead_p50_ms"],
                "jobs_per_s": thr["jobs_per_s"],
                "cpu_ms_per_job": cpu,
            }
            print(f"{name:<17} {lat['overhead_p50_ms']:>9.2f} ms {thr['jobs_per_s']:>8.0f} {cpu:>10.2f} ms")
        first, second = list(compared)[:2]
        base, other = compared[first], compared[second]
        ratios = {key: other[key] / base[key] for key in base}
        compared["ratio"] = {key: round(value, 3) for key, value in ratios.items()}
        print(
            f"ratio {second}/{first}: overhead {ratios['overhead_p50_ms']:.2f}x, jobs/s "
            f"{ratios['jobs_per_s']:.2f}x, CPU/job {ratios['cpu_ms_per_job']:.2f}x"
        )
    if args.json_path:
        args.json_path.write_text(
            json.dumps(
                {
                    "hardware": hardware,
                    "args": vars(args) | {"json_path": None},
                    "latency": latency,
                    "throughput": throughput,
                    "analyze": analyze,
                    "fleets": compared,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
