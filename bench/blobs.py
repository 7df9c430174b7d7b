"""Blob store: put/get latency (p50/p99) and throughput, local directory vs an S3-protocol server, one run.

The S3 side is boto3 against moto's S3 server started here on loopback (a Python server: it measures the
client's and the protocol's cost plus a slow server, so a real MinIO or cloud store differs — the ratio is the
figure to read, not the absolute S3 number). Images are meme-sized (``--size`` bytes, random so every put is a
new object); the rounds interleave the two backends so machine noise hits both alike.

Prints a table; ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memeguard.blobs import BlobStore, LocalBlobStore, S3BlobStore, S3Options  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_round(store: BlobStore, payloads: list[bytes]) -> tuple[list[float], list[float]]:
    """Put every payload, then get every key: per-call milliseconds."""
    puts, gets, keys = [], [], []
    for data in payloads:
        started = time.perf_counter()
        keys.append(store.put(data))
        puts.append((time.perf_counter() - started) * 1000)
    for key in keys:
        started = time.perf_counter()
        store.get(key)
        gets.append((time.perf_counter() - started) * 1000)
    return puts, gets


def summary(puts: list[float], gets: list[float], size: int) -> dict[str, float]:
    return {
        "put_p50_ms": round(pct(puts, 0.5), 3),
        "put_p99_ms": round(pct(puts, 0.99), 3),
        "get_p50_ms": round(pct(gets, 0.5), 3),
        "get_p99_ms": round(pct(gets, 0.99), 3),
        "puts_per_s": round(len(puts) / (sum(puts) / 1000), 1),
        "gets_per_s": round(len(gets) / (sum(gets) / 1000), 1),
        "put_mb_per_s": round(len(puts) * size / 1e6 / (sum(puts) / 1000), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="objects per round and backend")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=80_000, help="bytes per object (a typical meme JPEG)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3 = S3BlobStore(
            bucket,
            "images",
            S3Options(f"http://127.0.0.1:{port}", path_style=True, access_key_id="bench", secret_access_key="bench"),
        )
        s3.client.create_bucket(Bucket=bucket)
        local = LocalBlobStore(Path(tempfile.mkdtemp(prefix="memeguard-blobs-bench-")))
        stores: dict[str, BlobStore] = {"local": local, "s3 (moto)": s3}
        timings: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in stores}
        for _ in range(args.rounds):
            for name, store in stores.items():
                puts, gets = one_round(store, [os.urandom(args.size) for _ in range(args.n)])
                timings[name][0].extend(puts)
                timings[name][1].extend(gets)
    finally:
        server.stop()

    figures: dict[str, Any] = {name: summary(p, g, args.size) for name, (p, g) in timings.items()}
    figures["s3_over_local_put_p50"] = round(figures["s3 (moto)"]["put_p50_ms"] / figures["local"]["put_p50_ms"], 1)
    figures["s3_over_local_get_p50"] = round(figures["s3 (moto)"]["get_p50_ms"] / figures["local"]["get_p50_ms"], 1)
    figures["setup"] = {
        "n": args.n,
        "rounds": args.rounds,
        "size": args.size,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    print(f"blob store, {args.rounds} rounds x {args.n} objects of {args.size} bytes, {figures['setup']['machine']}")
    print(f"{'backend':<10} {'put p50':>9} {'put p99':>9} {'get p50':>9} {'get p99':>9} {'puts/s':>8} {'gets/s':>8}")
    for name in stores:
        f = figures[name]
        print(
            f"{name:<10} {f['put_p50_ms']:>7.2f}ms {f['put_p99_ms']:>7.2f}ms {f['get_p50_ms']:>7.2f}ms "
            f"{f['get_p99_ms']:>7.2f}ms {f['puts_per_s']:>8} {f['gets_per_s']:>8}"
        )
    print(f"s3/local p50: put {figures['s3_over_local_put_p50']}x, get {figures['s3_over_local_get_p50']}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
