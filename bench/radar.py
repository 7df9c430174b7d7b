"""新梗雷达: what it adds per finished job, and how long its ranking takes at 1 M jobs.

1. Cost per job: a worker reads the job's text for new phrases (``worker.radar.new_phrases``: jieba's cut and
   a knowledge-base phrase lookup) and counts its keys (``radar.store.record``: three statements inside the
   transaction that stores the job's verdict; that transaction's commit is the job's, not counted) on
   PostgreSQL. Captions are ToxiCN MM **train** captions when the dataset
   is there (the test split is never read), else the demo memes' texts. Reported: process CPU time per job
   (the target is <= 1 ms) and wall time per job, each part alone.
2. Query time: a fresh database seeded with the radar rows of ``--jobs`` finished jobs over 14 days (3
   tenants; images from a Zipf-distributed set of clusters, a quarter of them one-off; 0-3 phrases per job
   from a Zipf vocabulary, plus one new meme and one new phrase spreading over the last two days), then
   ``radar.store.rising`` timed ``--repeats`` times for the CLI (every tenant) and for one tenant's reader.

Prints a table; ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from hardware import cpu_model  # noqa: E402  (bench/, the script's own folder)

from memeguard.db import RadarSighting, make_engine, make_sessions  # noqa: E402
from memeguard.migrate import create_database, drop_database  # noqa: E402
from radar import store as radar  # noqa: E402
from worker.knowledge import KnowledgeBase  # noqa: E402
from worker.radar import new_phrases  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TENANTS = ("acme", "beta", "gamma")


def captions(data_dir: Path, count: int) -> list[str]:
    train = data_dir / "train_2.0.json"
    if train.exists():
        rows = json.loads(train.read_text(encoding="utf-8"))
        texts = [str(r.get("text") or r.get("content") or "") for r in rows]
        return [t for t in texts if t][:count]
    from worker.samples import DEMO_MEMES

    return ([f"{m.caption} {m.post_text}" for m in DEMO_MEMES] * (count // len(DEMO_MEMES) + 1))[:count]


def per_job(texts: list[str], url: str) -> dict[str, float]:
    """CPU and wall time per job of reading phrases and of recording the keys (one transaction per job)."""
    kb = KnowledgeBase.bundled().warm()
    new_phrases(kb, "预热")
    cpu, wall = time.process_time(), time.perf_counter()
    found = [new_phrases(kb, t) for t in texts]
    read_cpu, read_wall = time.process_time() - cpu, time.perf_counter() - wall
    sessions = make_sessions(make_engine(url))
    from jobs import store
    from memeguard.schemas import JobStatus

    with sessions() as session:
        jobs = store.insert_jobs(session, [store.NewJob("acme", f"c{i}", JobStatus.DONE) for i in range(len(texts))])
        session.commit()
    now = datetime.now(UTC)
    clusters = [str(job.id) for job in jobs[:50]]  # a few images that many jobs share
    keyed = [
        [(radar.PHRASE, p, now) for p in phrases] + [(radar.IMAGE, clusters[job.id.int % len(clusters)], now)]
        for job, phrases in zip(jobs, found, strict=True)
    ]
    record_cpu = record_wall = 0.0
    for job, keys in zip(jobs, keyed, strict=True):
        with sessions() as session:  # the job's own transaction, as the worker's (its commit is not the radar's)
            session.connection()
            cpu, wall = time.process_time(), time.perf_counter()
            radar.record(session, job.id, "acme", now, keys)
            session.flush()
            record_cpu += time.process_time() - cpu
            record_wall += time.perf_counter() - wall
            session.commit()
    batched_cpu = batched_wall = 0.0
    batch = 8  # MEMEGUARD_WORKER_BATCH_SIZE's default: a worker stores a batch's jobs in one transaction
    for start in range(0, len(jobs), batch):
        with sessions() as session:
            session.connection()
            chunk = zip(jobs[start : start + batch], keyed[start : start + batch], strict=True)
            counted = [radar.Counted(job.id, "beta", now, keys) for job, keys in chunk]
            session.execute(sa.delete(RadarSighting).where(RadarSighting.job_id.in_([c.job_id for c in counted])))
            cpu, wall = time.process_time(), time.perf_counter()
            radar.record_many(session, counted)
            batched_cpu += time.process_time() - cpu
            batched_wall += time.perf_counter() - wall
            session.commit()
    n = len(texts)
    return {
        "batched_record_cpu_ms": round(batched_cpu * 1000 / n, 3),
        "batched_record_wall_ms": round(batched_wall * 1000 / n, 3),
        "jobs": n,
        "phrases_per_job": round(sum(map(len, found)) / n, 2),
        "read_cpu_ms": round(read_cpu * 1000 / n, 3),
        "read_wall_ms": round(read_wall * 1000 / n, 3),
        "record_cpu_ms": round(record_cpu * 1000 / n, 3),
        "record_wall_ms": round(record_wall * 1000 / n, 3),
    }


def seed(url: str, jobs: int, now: datetime, rng: random.Random) -> tuple[str, str]:
    """The radar rows ``jobs`` finished jobs leave over 14 days, written with COPY (the counts aggregated
    as workers would leave them). Returns the spreading new cluster and phrase."""
    import psycopg

    clusters = [str(uuid.uuid4()) for _ in range(max(10, jobs // 200))]
    vocabulary = [f"词{i}" for i in range(max(100, jobs // 20))]
    new_cluster, new_phrase = str(uuid.uuid4()), "新词爆了"
    counts: dict[tuple[str, str, str, str], int] = {}
    first: dict[tuple[str, str], datetime] = {}
    sightings: list[tuple[str, str, str, datetime]] = []
    for n in range(jobs):
        at = now - timedelta(seconds=rng.uniform(0, 14 * 86400))
        tenant = TENANTS[n % 3]
        keys = [(radar.IMAGE, str(uuid.uuid4()) if rng.random() < 0.25 else clusters[_zipf(rng, len(clusters))])]
        keys += [(radar.PHRASE, vocabulary[_zipf(rng, len(vocabulary))]) for _ in range(rng.randint(0, 3))]
        if at > now - timedelta(days=2) and rng.random() < 0.002:
            keys += [(radar.IMAGE, new_cluster), (radar.PHRASE, new_phrase)]
        job = str(uuid.uuid4())
        for kind, key in set(keys):
            day = at.date().isoformat()
            counts[kind, key, day, tenant] = counts.get((kind, key, day, tenant), 0) + 1
            first[kind, key] = min(first.get((kind, key), at), at)
            sightings.append((job, kind, key, at))
    raw = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE radar_sightings DROP CONSTRAINT radar_sightings_job_id_fkey")  # no jobs rows here
        with cur.copy("COPY radar_keys (kind, key, first_seen, status) FROM STDIN") as copy:
            for (kind, key), seen in first.items():
                copy.write_row((kind, key, seen, "new"))
        with cur.copy("COPY radar_counts (kind, key, day, tenant, count) FROM STDIN") as copy:
            for row, count in counts.items():
                copy.write_row((*row, count))
        with cur.copy("COPY radar_sightings (job_id, kind, key, created_at) FROM STDIN") as copy:
            for row in sightings:
                copy.write_row(row)
        conn.commit()
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return new_cluster, new_phrase


def _zipf(rng: random.Random, size: int) -> int:
    return min(size - 1, int(rng.paretovariate(1.1)) - 1)


def query_times(url: str, now: datetime, repeats: int, new: tuple[str, str]) -> list[dict[str, Any]]:
    sessions = make_sessions(make_engine(url))
    rows = []
    for label, tenants, kind in [
        ("CLI, every tenant, both kinds", None, None),
        ("console, tenant acme, images", ["acme"], radar.IMAGE),
        ("console, tenant acme, phrases", ["acme"], radar.PHRASE),
    ]:
        timings = []
        for _ in range(repeats):
            with sessions() as session:
                started = time.perf_counter()
                top = radar.rising(session, tenants, now=now, kind=kind)
                timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        rows.append(
            {
                "query": label,
                "p50_ms": round(statistics.median(timings), 1),
                "max_ms": round(timings[-1], 1),
                "top": top[0].key if top else None,
                "top_is_the_new_one": bool(top) and top[0].key in new,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--per-job", type=int, default=2000, help="jobs for the per-job cost")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "toxicn_mm")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    now = datetime.now(UTC)
    url = create_database(PG, f"memeguard_bench_radar_{uuid.uuid4().hex[:8]}")
    try:
        cost = per_job(captions(args.data_dir, args.per_job), url)
    finally:
        drop_database(PG, url)
    url = create_database(PG, f"memeguard_bench_radar_{uuid.uuid4().hex[:8]}")
    try:
        started = time.perf_counter()
        new = seed(url, args.jobs, now, random.Random(11))
        seeded_s = round(time.perf_counter() - started, 1)
        queries = query_times(url, now, args.repeats, new)
    finally:
        drop_database(PG, url)
    print(f"新梗雷达 — {cpu_model()}, PostgreSQL")
    print(f"per job ({cost['jobs']} jobs, {cost['phrases_per_job']} phrases each on average):")
    print(f"  read phrases   CPU {cost['read_cpu_ms']:.3f} ms   wall {cost['read_wall_ms']:.3f} ms")
    record = f"CPU {cost['record_cpu_ms']:.3f} ms   wall {cost['record_wall_ms']:.3f} ms"
    print(f"  record keys    {record} (in the job's transaction)")
    batched = f"CPU {cost['batched_record_cpu_ms']:.3f} ms   wall {cost['batched_record_wall_ms']:.3f} ms"
    print(f"  record keys    {batched} (a worker's batch of 8 in one transaction)")
    for label, part in (("one job per transaction", "record_cpu_ms"), ("batches of 8", "batched_record_cpu_ms")):
        total = cost["read_cpu_ms"] + cost[part]
        verdict = "met" if total <= 1 else "missed"
        print(f"  together       CPU {total:.3f} ms per job, {label} (target <= 1 ms: {verdict})")
    print(f"ranking at {args.jobs:,} jobs over 14 days (seeded in {seeded_s} s):")
    for row in queries:
        which = "the seeded new one" if row["top_is_the_new_one"] else f"{row['top']} (not the seeded new one)"
        print(f"  {row['query']:<34} p50 {row['p50_ms']:>8.1f} ms   max {row['max_ms']:>8.1f} ms   top: {which}")
    if args.json:
        report = {"cpu": cpu_model(), "per_job": cost, "jobs": args.jobs, "queries": queries}
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
