"""What the connection pool's pre-ping costs per request: a session that runs one small query, through an
engine with and without ``pool_pre_ping`` (one extra round trip per checkout), on a real PostgreSQL.

Runs the two variants interleaved in rounds (this machine is noisy: compare within one run) and prints the
median per-request time of each and their difference. --json PATH writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memeguard.db import make_engine, make_sessions


def per_request_us(sessions, n: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(n):
        with sessions() as session:
            session.execute(sa.text("SELECT 1"))
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--url",
        default=os.environ.get("MEMEGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, dest="json_path")
    args = parser.parse_args()
    variants = {
        "pre_ping": make_sessions(make_engine(args.url, pre_ping=True)),
        "no_pre_ping": make_sessions(make_engine(args.url, pre_ping=False)),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for sessions in variants.values():
        per_request_us(sessions, 50)  # warm the pool
    for _ in range(args.rounds):
        for name, sessions in variants.items():
            times[name].append(per_request_us(sessions, args.requests))
    medians = {name: statistics.median(values) for name, values in times.items()}
    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    print(f"pool pre-ping cost — {hardware}, {args.rounds} rounds x {args.requests} requests (session + SELECT 1)")
    for name, value in medians.items():
        print(f"{name:<12}{value:>10.0f} µs/request")
    extra = medians["pre_ping"] - medians["no_pre_ping"]
    print(f"{'pre-ping adds':<12}{extra:>10.0f} µs/request ({extra / medians['no_pre_ping']:+.0%})")
    if args.json_path:
        args.json_path.write_text(
            json.dumps(
                {"hardware": hardware, "median_us": medians, "rounds": times, "pre_ping_adds_us": extra}, indent=2
            )
        )


if __name__ == "__main__":
    main()
