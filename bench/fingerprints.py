"""Hash-bank lookup: the multi-index-hashing index against a brute-force numpy popcount scan, same run.

Builds banks of random 256-bit PDQ hashes (10k, 100k, 1M by default), queries each with hashes at a random
distance 0..31 from a stored one (a match exists, as for a re-encoded repeat) and with fresh random hashes
(no match, the common case), on ONE pinned core. Both paths must return the same hits (checked every
query). Prints a table; ``--json PATH`` writes one row per bank size with n, p50_ms, p99_ms, lookups_per_s,
speedup, build_s, memory_mb. Targets (issue 4) at 1M: p99 <= 2 ms, >= 50x the scan, <= 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from banks.index import MultiIndexHash, brute_force  # noqa: E402

RADIUS = 31  # PDQ's customary match distance


def random_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, np.iinfo(np.uint64).max, size=(n, 4), dtype=np.uint64, endpoint=True)


def near(rng: np.random.Generator, row: np.ndarray) -> np.ndarray:
    out = row.copy()
    for bit in rng.choice(256, int(rng.integers(0, RADIUS + 1)), replace=False):
        out[bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    return out


def measure(n: int, queries: int, rng: np.random.Generator) -> dict[str, float]:
    rows, ids = random_hashes(rng, n), np.arange(n, dtype=np.int64)
    index = MultiIndexHash(256)
    started = time.perf_counter()
    index.build(ids, rows)
    build_s = time.perf_counter() - started
    probes = [near(rng, rows[rng.integers(n)]) if i % 2 == 0 else random_hashes(rng, 1)[0] for i in range(queries)]
    index_ms, scan_ms = [], []
    for probe in probes:
        started = time.perf_counter()
        hits = index.search(probe, RADIUS)
        index_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        expected = brute_force(rows, ids, probe, RADIUS)
        scan_ms.append((time.perf_counter() - started) * 1000)
        if hits != expected:
            raise SystemExit(f"index and scan disagree at n={n}: {hits[:3]} vs {expected[:3]}")
    return {
        "n": n,
        "p50_ms": float(np.percentile(index_ms, 50)),
        "p99_ms": float(np.percentile(index_ms, 99)),
        "lookups_per_s": 1000 / float(np.mean(index_ms)),
        "scan_p50_ms": float(np.percentile(scan_ms, 50)),
        "speedup": float(np.mean(scan_ms) / np.mean(index_ms)),
        "build_s": build_s,
        "memory_mb": index.memory_bytes() / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, dest="json_path")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rng = np.random.default_rng(args.seed)
    rows = [measure(int(n), args.queries, rng) for n in args.sizes.split(",")]
    print(
        f"PDQ bank lookup, radius {RADIUS}, {args.queries} queries (half near a stored hash, half random), "
        f"1 pinned core, {platform.machine()} {platform.python_version()}"
    )
    print(f"{'n':>9}{'p50 ms':>9}{'p99 ms':>9}{'lookups/s':>11}{'scan p50':>10}{'speedup':>9}{'build s':>9}{'MB':>8}")
    for r in rows:
        print(
            f"{r['n']:>9}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['lookups_per_s']:>11.0f}"
            f"{r['scan_p50_ms']:>10.2f}{r['speedup']:>9.1f}{r['build_s']:>9.2f}{r['memory_mb']:>8.1f}"
        )
    print("targets at 1M: p99 <= 2 ms, speedup >= 50x, memory <= 200 MB")
    if args.json_path:
        args.json_path.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
