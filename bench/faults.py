"""The fault campaign, replayed: uploads through all three endpoints while the fleet is broken on purpose.

Starts its own fleet on loopback — a Redis on its own port (no persistence: a killed Redis loses its queue,
the worst case), a fresh PostgreSQL database, the API (uvicorn) and worker processes (one runs beat: the
sweeper and the callback sender) — then sends ``--uploads`` uploads spread over ``--duration`` seconds through
``POST /v1/jobs``, ``:batch`` and ``:stream`` from concurrent clients, while it

  * kills a worker with ``kill -9`` (its process group: the prefork children too) and starts it again,
  * kills Redis with ``kill -9`` and restarts it ``--redis-down-s`` seconds later,
  * terminates every database connection of the fleet (``pg_terminate_backend``), twice.

Clients behave as the README tells a platform to: retry 429/503, connection errors and the per-item
``queue_unavailable`` / ``database_unavailable`` / ``internal_error`` codes with backoff (uploads are
idempotent by content id). Afterwards it waits for the fleet to drain and counts, from the database:

  accepted    content ids the API answered with a job
  done/failed jobs that reached an outcome
  stuck       accepted jobs still not final when the drain timeout passed
  lost        accepted content ids with no job row
  duplicated  jobs processed more than once (two verdicts or two policy actions) or content ids with two jobs
  plain_5xx   HTTP answers of 500 or more without an error code (the contract says: never)

With ``--no-faults`` it also reports the load one upload puts on the servers: Redis commands, PostgreSQL
commits and row writes per accepted upload (the figures docs/scaling.md plans with).

Needs PostgreSQL (MEMEGUARD_TEST_PG_URL) and a ``redis-server`` binary. Prints a table; ``--json PATH``
writes the figures. Run by hand (minutes); the figures to hold are 0 lost, 0 duplicated, 0 plain_5xx.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pipeline import PG_ADMIN, free_port  # noqa: E402
from memeguard.migrate import upgrade  # noqa: E402
from worker.samples import render_meme  # noqa: E402

KEY = "faults-" + "k" * 24
RETRY_CODES = {"queue_unavailable", "database_unavailable", "internal_error", "rate_limited", "queue_full"}
GROUP = 10  # items per :batch request and per :stream request


class RedisServer:
    """A redis-server of our own on a free loopback port, killable with SIGKILL and restartable there."""

    def __init__(self, data: Path) -> None:
        self.port, self.log = free_port(), data / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        time.sleep(0.3)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


class Fleet:
    """The API and the workers against their own database and Redis."""

    def __init__(self, redis: RedisServer, workers: int, analyzer: str, data: Path) -> None:
        self.db, self.data = f"memeguard_faults_{uuid.uuid4().hex[:8]}", data
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.db}"'))
        self.url = sa.engine.make_url(PG_ADMIN).set(database=self.db).render_as_string(hide_password=False)
        upgrade(self.url)
        self.port = free_port()
        self.env = {
            **os.environ,
            "MEMEGUARD_DATABASE_URL": self.url,
            "MEMEGUARD_BROKER_URL": redis.url,
            "MEMEGUARD_QUEUE_NAME": "memeguard.faults",
            "MEMEGUARD_ANALYZER": analyzer,
            "MEMEGUARD_BLOB_STORE": str(data / "blobs"),
            "MEMEGUARD_API_KEYS": json.dumps({"bench": KEY}),
            "MEMEGUARD_LOG_LEVEL": "WARNING",
            "MEMEGUARD_WORKER_OPS_PORT": "0",
            "MEMEGUARD_RATE_LIMIT": "off",
            "MEMEGUARD_VISIBILITY_TIMEOUT_S": "10",
            "MEMEGUARD_REDELIVERY_CHECK_S": "2",
            "MEMEGUARD_REQUEUE_AFTER_S": "15",
            "MEMEGUARD_SWEEP_EVERY_S": "5",
            "MEMEGUARD_BROKER_TIMEOUT_S": "2",
        }
        self.api = self._spawn(["api", "--port", str(self.port), "--workers", "2"], "api")
        self.workers = [self._worker(i) for i in range(workers)]
        self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        self._wait_ready()

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "composition.cli", *args],
            env=self.env,
            stdout=(self.data / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _worker(self, number: int) -> subprocess.Popen[bytes]:
        beat = ["--beat"] if number == 0 else []
        return self._spawn(["worker", "-c", "2", "-P", "prefork", "-n", f"f{number}@%h", *beat], f"worker{number}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the fleet did not start; see the logs in {self.data}")

    def kill_worker(self, number: int) -> None:
        os.killpg(self.workers[number].pid, signal.SIGKILL)
        self.workers[number].wait()

    def restart_worker(self, number: int) -> None:
        self.workers[number] = self._worker(number)

    def cut_connections(self) -> int:
        """Terminate every backend of the fleet's database (API and workers alike)."""
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            cut = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": self.db},
            )
            return int(cut.scalar_one())

    def close(self) -> None:
        for proc in [self.api, *self.workers]:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for proc in [self.api, *self.workers]:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.engine.dispose()
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'))


@dataclass
class Tally:
    """What the clients saw, shared by the client threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: set[str] = field(default_factory=set)
    gave_up: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    plain_5xx: int = 0
    retries: int = 0

    def answer(self, response: httpx.Response | None, error: str | None = None) -> dict[str, Any] | None:
        """Record one HTTP answer; its JSON body when it has one."""
        with self.lock:
            if response is None:
                self.answers[f"connection:{error}"] += 1
                return None
            try:
                body = (
                    response.json()
                    if response.status_code != 200 or "json" in response.headers.get("content-type", "")
                    else None
                )
            except ValueError:
                body = None
            if response.status_code >= 500 and not (isinstance(body, dict) and "error" in body):
                self.plain_5xx += 1
            self.answers[str(response.status_code)] += 1
            return body if isinstance(body, dict) else None


def item(content_id: str, image: bytes) -> dict[str, Any]:
    return {"content_id": content_id, "image_base64": base64.b64encode(image).decode(), "post_text": "故障演练"}


class Uploader:
    """One client thread: its content ids, in groups, each through the next endpoint in turn."""

    def __init__(self, base: str, tally: Tally, images: list[bytes], pause_s: float, attempts: int = 60) -> None:
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        self.tally, self.images, self.pause_s, self.attempts = tally, images, pause_s, attempts

    def run(self, groups: list[list[str]]) -> None:
        senders: list[Callable[[list[str]], list[str]]] = [self.single, self.batch, self.stream]
        for number, group in enumerate(groups):
            pending = list(group)
            for attempt in range(self.attempts):
                pending = senders[number % 3](pending)
                if not pending:
                    break
                with self.tally.lock:
                    self.tally.retries += len(pending)
                time.sleep(min(5.0, 0.2 * 2 ** min(attempt, 5)) * random.uniform(0.5, 1.0))
            if pending:
                with self.tally.lock:
                    self.tally.gave_up["retries_exhausted"] += len(pending)
            time.sleep(self.pause_s)
        self.http.close()

    def _image(self, content_id: str) -> bytes:
        return self.images[hash(content_id) % len(self.images)]

    def _post(self, url: str, **kwargs: Any) -> httpx.Response | None:
        try:
            return self.http.post(url, **kwargs)
        except httpx.HTTPError as exc:
            self.tally.answer(None, type(exc).__name__)
            return None

    def _settle(self, content_id: str, row: dict[str, Any]) -> bool:
        """True when the item is settled (accepted, or refused for good); False to retry it."""
        if "job_id" in row and not row.get("error"):
            with self.tally.lock:
                self.tally.accepted.add(content_id)
            return True
        code = str(row.get("error", "no_code"))
        if code in RETRY_CODES:
            with self.tally.lock:
                self.tally.retried[code] += 1
            return False
        with self.tally.lock:
            self.tally.gave_up[code] += 1
        return True

    def single(self, ids: list[str]) -> list[str]:
        left = []
        for content_id in ids:
            response = self._post(
                "/v1/jobs",
                data={"content_id": content_id, "post_text": "故障演练"},
                files={"image": ("m.png", self._image(content_id), "image/png")},
            )
            body = self.tally.answer(response) if response is not None else None
            if response is None or body is None or not self._settle(content_id, body):
                left.append(content_id)
        return left

    def batch(self, ids: list[str]) -> list[str]:
        response = self._post("/v1/jobs:batch", json={"items": [item(c, self._image(c)) for c in ids]})
        body = self.tally.answer(response) if response is not None else None
        if response is None or body is None or "results" not in body:
            if body is not None:
                with self.tally.lock:
                    self.tally.retried[str(body.get("error", "no_code"))] += len(ids)
            return ids
        return [c for c, row in zip(ids, body["results"], strict=True) if not self._settle(c, row)]

    def stream(self, ids: list[str]) -> list[str]:
        lines = "".join(json.dumps(item(c, self._image(c)), ensure_ascii=False) + "\n" for c in ids)
        response = self._post(
            "/v1/jobs:stream", content=lines.encode(), headers={"Content-Type": "application/x-ndjson"}
        )
        if response is None:
            return ids
        self.tally.answer(response)
        if response.status_code != 200:
            return ids
        seen: dict[int, dict[str, Any]] = {}
        for line in response.text.splitlines():
            if line.strip():
                row = json.loads(line)
                seen[int(row["line"])] = row
        return [c for number, c in enumerate(ids, 1) if number not in seen or not self._settle(c, seen[number])]


def faults(fleet: Fleet, redis: RedisServer, redis_down_s: float, log: list[str], t0: float) -> None:
    """The campaign's script, on its own thread while the clients upload."""

    def note(what: str) -> None:
        log.append(f"{time.monotonic() - t0:6.1f}s {what}")

    time.sleep(3)
    fleet.kill_worker(1)
    note("kill -9 worker 1")
    time.sleep(2)
    fleet.restart_worker(1)
    note("worker 1 restarted")
    time.sleep(2)
    redis.kill()
    note("kill -9 redis")
    time.sleep(redis_down_s / 2)
    note(f"terminated {fleet.cut_connections()} database connections (redis down)")
    time.sleep(redis_down_s / 2)
    redis.start()
    note("redis restarted (empty: no persistence)")
    time.sleep(3)
    note(f"terminated {fleet.cut_connections()} database connections")
    time.sleep(2)
    fleet.kill_worker(0)
    note("kill -9 worker 0 (the beat worker)")
    time.sleep(2)
    fleet.restart_worker(0)
    note("worker 0 restarted")


def drain(fleet: Fleet, accepted: set[str], timeout_s: float) -> tuple[dict[str, int], float]:
    """Wait until every accepted job is final (or the timeout); the outcome counts and the drain time."""
    started = time.monotonic()
    query = sa.text("SELECT content_id, status FROM jobs WHERE tenant = 'bench'")
    while True:
        try:
            with fleet.engine.connect() as conn:
                status = dict(conn.execute(query).all())
        except sa.exc.DBAPIError:
            time.sleep(1)
            continue
        waiting = [c for c in accepted if status.get(c) not in ("done", "failed", "rejected")]
        if not waiting or time.monotonic() - started > timeout_s:
            break
        time.sleep(1)
    counts = Counter(str(status.get(c, "lost")) for c in accepted)
    counts["stuck"] = sum(v for k, v in counts.items() if k in ("queued", "running"))
    return dict(counts), time.monotonic() - started


def duplicates(fleet: Fleet) -> dict[str, int]:
    checks = {
        "two_verdicts": "SELECT count(*) FROM (SELECT job_id FROM verdicts GROUP BY job_id HAVING count(*) > 1) d",
        "two_policy_actions": "SELECT count(*) FROM (SELECT job_id FROM actions WHERE source = 'policy' "
        "GROUP BY job_id HAVING count(*) > 1) d",
        "two_jobs_per_content_id": "SELECT count(*) FROM (SELECT content_id FROM jobs GROUP BY tenant, content_id "
        "HAVING count(*) > 1) d",
    }
    with fleet.engine.connect() as conn:
        return {name: int(conn.execute(sa.text(sql)).scalar_one()) for name, sql in checks.items()}


def requeued(fleet: Fleet) -> int:
    """Jobs the sweeper re-published (their message died with Redis or never left the API)."""
    with fleet.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE event = 'job.requeued'")).scalar_one())


def load_counters(fleet: Fleet, redis: RedisServer) -> dict[str, int]:
    """Redis commands processed and the fleet database's commits and row writes so far."""
    import redis as redis_client

    info = redis_client.Redis(port=redis.port).info("stats")
    with fleet.engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted "
                "FROM pg_stat_database WHERE datname = current_database()"
            )
        ).one()
    return {
        "redis_commands": int(info["total_commands_processed"]),
        "pg_commits": int(row[0]),
        "pg_row_writes": int(row[1]) + int(row[2]) + int(row[3]),
    }


def run(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    redis = RedisServer(data)
    fleet = Fleet(redis, args.workers, args.analyzer, data)
    try:
        images = [render_meme(caption) for caption in ("故障演练", "你说得对", "笑死我了", "早上好")]
        ids = [f"f{n:05d}" for n in range(args.uploads)]
        groups = [ids[i : i + GROUP] for i in range(0, len(ids), GROUP)]
        tally, log = Tally(), []
        per_client = [groups[i :: args.clients] for i in range(args.clients)]
        pause = args.duration / max(1, len(per_client[0]))
        before = load_counters(fleet, redis)
        t0 = time.monotonic()
        clients = [
            threading.Thread(target=Uploader(f"http://127.0.0.1:{fleet.port}", tally, images, pause).run, args=(mine,))
            for mine in per_client
        ]
        chaos = (
            threading.Thread(target=faults, args=(fleet, redis, args.redis_down_s, log, t0))
            if not args.no_faults
            else threading.Thread(target=lambda: None)
        )
        for thread in [*clients, chaos]:
            thread.start()
        for thread in [*clients, chaos]:
            thread.join()
        upload_s = time.monotonic() - t0
        outcome, drain_s = drain(fleet, tally.accepted, args.drain_timeout_s)
        dupes, swept = duplicates(fleet), requeued(fleet)
        time.sleep(2)  # pg_stat_database is updated when a backend reports, not at each commit
        after = load_counters(fleet, redis)
        per_job = (
            {f"{key}_per_job": round((after[key] - before[key]) / max(1, len(tally.accepted)), 2) for key in before}
            if args.no_faults
            else {}
        )  # a killed Redis restarts its counters
    finally:
        fleet.close()
        redis.kill()
    return {
        "uploads": args.uploads,
        "accepted": len(tally.accepted),
        "done": outcome.get("done", 0),
        "failed": outcome.get("failed", 0),
        "stuck": outcome["stuck"],
        "lost": outcome.get("lost", 0),
        "duplicated": sum(dupes.values()),
        "duplicates": dupes,
        "plain_5xx": tally.plain_5xx,
        "gave_up": dict(tally.gave_up),
        "client_retries": tally.retries,
        "retried_codes": dict(tally.retried),
        "requeued_by_sweeper": swept,
        "answers": dict(tally.answers),
        "upload_s": round(upload_s, 1),
        "drain_s": round(drain_s, 1),
        "faults": log,
        "load": per_job,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=40.0, help="seconds the uploads are spread over")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--analyzer", default="noop", help="noop (the fleet's own behaviour) or embedded")
    parser.add_argument("--redis-down-s", type=float, default=20.0)
    parser.add_argument("--drain-timeout-s", type=float, default=240.0)
    parser.add_argument("--no-faults", action="store_true", help="the same load on a healthy fleet (a control)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    data = Path(os.environ.get("MEMEGUARD_BENCH_DIR", "/tmp")) / f"memeguard-faults-{uuid.uuid4().hex[:6]}"
    data.mkdir(parents=True)
    figures = run(args, data)
    figures["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    figures["logs"] = str(data)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n")


def report(f: dict[str, Any]) -> None:
    print("fault campaign:", f["machine"])
    for line in f["faults"]:
        print("  " + line)
    print(
        f"{'uploads':>10} {'accepted':>9} {'done':>6} {'failed':>7} {'stuck':>6} {'lost':>5} {'dup':>4} "
        f"{'plain5xx':>9} {'drain_s':>8}"
    )
    print(
        f"{f['uploads']:>10} {f['accepted']:>9} {f['done']:>6} {f['failed']:>7} {f['stuck']:>6} {f['lost']:>5} "
        f"{f['duplicated']:>4} {f['plain_5xx']:>9} {f['drain_s']:>8}"
    )
    print("client gave up:", f["gave_up"] or "none", "| items retried:", f["client_retries"], f["retried_codes"])
    print("answers:", f["answers"], "| jobs re-published by the sweeper:", f["requeued_by_sweeper"])
    if f["load"]:
        print("per accepted upload (healthy fleet):", f["load"])


if __name__ == "__main__":
    main()
