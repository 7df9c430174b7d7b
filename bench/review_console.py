"""Review console page loads with a full queue: real PostgreSQL, the real API server (uvicorn) on localhost,
a real HTTP client with a reviewer's session, server-side rendering included.

Seeds a fresh database with N finished items (default 10,000; the default policy decides their actions, so
the tagged / throttled / low-confidence / QA queues fill as in production), some reviewed (for the
dashboard), each with an image (20 distinct rendered memes in the blob store, so queues show thumbnails),
then times each page R times and prints p50 / p95 / max per page, the thumbnail and the overview included.
``--json PATH`` writes the rows. Targets: every page under 300 ms with 10k items in the queue (issue 5);
p95 <= 50 ms per page at 10k with thumbnails on (issue 18).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hardware import cpu_model  # noqa: E402  (bench/, the script's own folder)

from composition.runtime import Runtime  # noqa: E402
from jobs import store  # noqa: E402
from memeguard.db import Role  # noqa: E402
from memeguard.migrate import create_database, drop_database  # noqa: E402
from memeguard.schemas import Emotion, HarmType, Intent, JobStatus, ModerationAction, Verdict  # noqa: E402
from memeguard.settings import Settings  # noqa: E402
from policies import evaluate, load_policy  # noqa: E402
from review import reviews, users  # noqa: E402

PASSWORD = "bench password 123"
KEY = "k" * 32
SECRET = "c" * 40 + "-bench-secret"
HARMS = (
    [HarmType.NONE] * 4
    + [HarmType.GENERAL_OFFENSE] * 3
    + [HarmType.DISPIRITED_CULTURE, HarmType.TARGETED_HARM, HarmType.SEXUAL_INNUENDO]
)


def seed(runtime: Runtime, items: int, rng: random.Random) -> uuid.UUID:
    """N finished items (90 % in the reviewer's tenant), 2 % reviewed. Returns one tagged item's id."""
    policy = load_policy()
    from worker.samples import render_meme

    images = [runtime.blobs.put(render_meme(f"基准测试第{i}张", ("doge", "panda", "plain")[i % 3])) for i in range(20)]
    with runtime.sessions() as session:
        reviewer = users.add_user(session, "bench", PASSWORD, Role.SENIOR, ["bench"], actor="bench")
        for start in range(0, items, 1000):
            news = [
                store.NewJob(
                    "bench" if rng.random() < 0.9 else "other",
                    f"c{i}",
                    JobStatus.RUNNING,
                    post_text="你说得对，但是我不听",
                    callback_url="https://p.example/hook",
                    image_sha256=images[i % len(images)],
                    media_type="image/png",
                )
                for i in range(start, min(items, start + 1000))
            ]
            verdicts = [_verdict(rng) for _ in news]
            jobs = store.insert_jobs(session, news)
            done = [(job.id, v, evaluate(policy, v), {}) for job, v in zip(jobs, verdicts, strict=True)]
            store.finish_jobs(session, done)
        _spread_over_days(session, 14)
        session.commit()
        tagged = reviews.queue(session, reviewer, "tagged", limit=max(1, items // 50))
        for item in tagged[1:]:
            reviews.claim(session, item.job_id, reviewer)
            reviews.decide(
                session,
                item.job_id,
                reviewer,
                rng.choice(["confirm", "overturn"]),
                reason="bench",
                action=ModerationAction.ALLOW,
            )
        session.commit()
    engine = runtime.sessions.kw["bind"]  # what autovacuum does after a bulk load (PostgreSQL >= 13 vacuums inserts)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    return tagged[0].job_id


def _spread_over_days(session: Any, days: int) -> None:
    """Submissions spread evenly over the ``days`` before now, as a platform's are (the overview's default
    range is 14 days; its ended days are read from daily counts, so where items fall matters)."""
    session.execute(sa.text("SELECT setseed(0.7)"))
    session.execute(sa.text(f"UPDATE jobs SET created_at = now() - random() * interval '{days} days'"))
    for table in ("verdicts", "actions", "pending_reviews"):
        stamp = "j.created_at" if table == "pending_reviews" else "j.created_at + interval '2 seconds'"
        session.execute(sa.text(f"UPDATE {table} t SET created_at = {stamp} FROM jobs j WHERE j.id = t.job_id"))


def _verdict(rng: random.Random) -> Verdict:
    return Verdict(
        emotion=Emotion.CONTEMPT,
        intent=Intent.SARCASM,
        harm_type=rng.choice(HARMS),
        confidence=round(rng.uniform(0.3, 0.99), 2),
        explanation="阴阳怪气",
        ocr_text="你说得对",
        analyzer=rng.choice(["embedded", "vlm"]),
        analyzer_version="3",
    )


def serve(url: str, port: int) -> subprocess.Popen[bytes]:
    """The API (with the console) as deployed: its own uvicorn process, configured by environment."""
    env = {
        **os.environ,
        "MEMEGUARD_DATABASE_URL": url,
        "MEMEGUARD_API_KEYS": json.dumps({"bench": KEY}),
        "MEMEGUARD_CONSOLE_SECRET": SECRET,
        "MEMEGUARD_CONSOLE_SECURE_COOKIES": "false",
        "MEMEGUARD_DATA_DIR": "/tmp/memeguard-bench-console",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "composition.webapp:app", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the API server did not start")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def login(client: httpx.Client) -> str:
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/review/login").text).group(1)  # type: ignore[union-attr]
    client.post("/review/login", data={"username": "bench", "password": PASSWORD, "csrf": token})
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/review/queue/tagged").text).group(1)  # type: ignore[union-attr]


def time_page(
    client: httpx.Client, method: str, path: str, repeats: int, data: dict[str, str] | None
) -> dict[str, Any]:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.request(method, path, data=data)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code not in (200, 303):
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:200]}")
    timings.sort()
    label = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "{id}", path.split("?")[0])
    return {
        "page": f"{method} {label}",
        "p50_ms": timings[len(timings) // 2],
        "p95_ms": timings[min(len(timings) - 1, int(len(timings) * 0.95))],
        "max_ms": timings[-1],
    }


def measure(runtime: Runtime, url: str, items: int, repeats: int, rng: random.Random) -> list[dict[str, Any]]:
    item = seed(runtime, items, rng)
    port = free_port()
    server = serve(url, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            csrf = login(client)
            pages = [("GET", f"/review/queue/{q}", None) for q in reviews.QUEUES] + [
                ("GET", f"/review/item/{item}", None),
                ("GET", f"/review/item/{item}/thumb", None),
                ("GET", "/review/stats", None),
                ("GET", "/review/overview", None),
                ("GET", "/review/admin/banks", None),
                ("GET", "/review/admin/policy", None),
                ("POST", "/review/queue/tagged/next", {"csrf": csrf}),
            ]
            return [{"items": items, **time_page(client, m, p, repeats, d)} for m, p, d in pages]
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for n in args.items:
        url = create_database(args.pg_url, f"memeguard_bench_console_{uuid.uuid4().hex[:8]}")
        try:
            runtime = Runtime(Settings(data_dir=Path("/tmp/memeguard-bench-console"), database_url=url))
            rows += measure(runtime, url, n, args.repeats, random.Random(7))
            runtime.sessions.kw["bind"].dispose()
        finally:
            drop_database(args.pg_url, url)
    where = f"{cpu_model()}, PostgreSQL, uvicorn in its own process"
    print(f"review console page loads — {where}, {args.repeats} loads per page")
    print(f"{'items':>8} {'page':<34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for r in rows:
        print(f"{r['items']:>8} {r['page']:<34} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['max_ms']:>8.1f}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "rows": rows}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
