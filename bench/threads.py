"""How a node's cores are best split between worker processes and ONNX Runtime / sentence-encoder threads.

Each configuration runs P worker-like processes at once, each with its own analyzer (today's OCR with T ONNX
Runtime threads, the shipped classifier whose sentence encoder gets E OpenMP threads) reading the same rendered
ToxiCN MM **train** captions in batches of the worker's size (8) through ``analyze_batch``, the encoder's memo
emptied before each batch. Figures: memes per second for the node (all processes, from the first start to the
last finish), per core, and each batch's time per meme at p95 (what the split does to latency). Nothing is
pinned: the processes share the node's cores as workers do.

    python bench/threads.py [--memes 96] [--configs 2x1x1,1x2x1,1x2x2,2x2x1] [--json PATH]

A configuration ``PxTxE`` is P processes x T ONNX Runtime threads x E encoder threads.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer import SHIPPED, captions, classifier_and_kb  # noqa: E402  (bench/, the script's own folder)
from hardware import cpu_model  # noqa: E402

BATCH = 8


def worker(texts: list[str], threads: int, encoder_threads: int, start: Any, out: Any) -> None:
    """One worker-like process: build the analyzer, wait for the others, read every batch."""
    from memeguard.imaging import decode_frames
    from worker.analyzers import AnalysisInput
    from worker.analyzers.embedded import EmbeddedAnalyzer
    from worker.encoder import SentenceEncoder
    from worker.ocr import ChineseOcr
    from worker.samples import render_meme

    memes = [decode_frames(render_meme(t), 1) for t in texts]
    classifier, kb = classifier_and_kb(None, False)
    encoder = SentenceEncoder(threads=encoder_threads)
    if classifier is not None and classifier.semantic is not None:
        classifier.semantic.encoder = encoder
    ocr = ChineseOcr(threads=threads)
    analyzer = EmbeddedAnalyzer(kb, ocr.read, classifier, ocr_many=ocr.read_many)
    analyzer.analyze_batch([AnalysisInput(f) for f in memes[:BATCH]])  # warm-up
    start.wait()
    began, batches = time.perf_counter(), []
    for first in range(0, len(memes), BATCH):
        part = memes[first : first + BATCH]
        encoder.forget()
        encoder.encode([""])
        started = time.perf_counter()
        analyzer.analyze_batch([AnalysisInput(f) for f in part])
        batches.append((time.perf_counter() - started) * 1000 / len(part))
    out.put({"began": began, "ended": time.perf_counter(), "batches": batches, "memes": len(memes)})


def run(config: str, texts: list[str]) -> dict[str, float]:
    processes, threads, encoder_threads = (int(x) for x in config.split("x"))
    context = mp.get_context("spawn")
    start, out = context.Barrier(processes), context.Queue()
    procs = [
        context.Process(target=worker, args=(texts, threads, encoder_threads, start, out)) for _ in range(processes)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r["ended"] for r in results) - min(r["began"] for r in results)
    memes = sum(r["memes"] for r in results)
    cores = os.cpu_count() or 1
    return {
        "memes_per_s": memes / wall,
        "memes_per_s_per_core": memes / wall / cores,
        "batch_ms_per_meme_p50": float(np.percentile([b for r in results for b in r["batches"]], 50)),
        "batch_ms_per_meme_p95": float(np.percentile([b for r in results for b in r["batches"]], 95)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memes", type=int, default=96, help="memes each process reads")
    parser.add_argument("--configs", default="2x1x1,1x2x1,1x2x2,2x2x1")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "toxicn_mm")
    parser.add_argument("--json", type=Path, dest="json_path")
    args = parser.parse_args()
    if not SHIPPED.exists():
        raise SystemExit("no shipped classifier: run `make model` first")
    texts = captions(args.data_dir, args.memes, args.seed)
    report = {config: run(config, texts) for config in args.configs.split(",")}
    hardware = f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, {platform.python_version()}"
    print(f"worker split — {hardware}, {args.memes} rendered train captions per process, batches of {BATCH}")
    print(f"{'P x T x E':<12}{'memes/s':>10}{'per core':>10}{'p50 ms/meme':>13}{'p95 ms/meme':>13}")
    for config, r in report.items():
        print(
            f"{config:<12}{r['memes_per_s']:>10.1f}{r['memes_per_s_per_core']:>10.1f}"
            f"{r['batch_ms_per_meme_p50']:>13.1f}{r['batch_ms_per_meme_p95']:>13.1f}"
        )
    if args.json_path:
        args.json_path.write_text(json.dumps({"hardware": hardware, "memes": args.memes, **report}, indent=2))


if __name__ == "__main__":
    main()
