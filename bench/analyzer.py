"""Embedded analyzer cost per meme on ONE CPU core (the process is pinned; ONNX Runtime and the sentence
encoder, whose default is one thread, get one thread each), today's code beside the code before issue 20.

Memes are ToxiCN MM train-split captions rendered with a CJK font (the test split is never read here). The
analyzer is OCR + knowledge base + classifier (with the encoder when the artefact was trained with it, and the
external knowledge bases it was trained with; --classifier PATH, else the shipped one from `make model` when
present, --no-classifier for OCR + knowledge base only).

- **before**: the OCR reader as it was (bench/baseline_ocr.py: RapidOCR's pipeline, one meme at a time) in the
  same analyzer, meme by meme — what a worker did per item until issue 20.
- **today, 1 a call**: ``analyze`` one meme at a time (the per-item latency; the p95 target, issue 3/20: <= 300 ms).
- **today, N a call**: ``analyze_batch`` over N memes (a worker's batch: OCR lines and encoder texts of the
  whole batch in one pass); per meme = the call's time / N, the throughput a core sustains at that batch size.

The variants take turns on each group of 32 memes, so a noisy neighbour slows them alike; the sentence encoder's
memo is emptied before every call (nothing is memoised across variants; the empty post text stays memoised, as
in a worker). Also timed alone: OCR, the sentence encoder over 1, 8 and 32 texts a call, and the emotion and
attack-style readers (target, issue 14: <= 10 ms p95). Prints a table; --json PATH writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from baseline_ocr import BaselineOcr  # noqa: E402  (bench/, the script's own folder)
from hardware import cpu_model  # noqa: E402

from memeguard.imaging import decode_frames  # noqa: E402
from worker.analyzers import AnalysisInput  # noqa: E402
from worker.analyzers.embedded import EmbeddedAnalyzer  # noqa: E402
from worker.ocr import ChineseOcr  # noqa: E402
from worker.samples import render_meme  # noqa: E402
from worker.training import build_kb  # noqa: E402

SHIPPED = ROOT / ".memeguard" / "models" / "current.joblib"


def captions(data_dir: Path, n: int, seed: int) -> list[str]:
    rows = json.loads((data_dir / "train_2.0.json").read_text(encoding="utf-8"))
    random.Random(seed).shuffle(rows)
    return [str(r["text"]).strip() or " " for r in rows[:n]]


def classifier_and_kb(path: Path | None, none: bool):  # type: ignore[no-untyped-def]
    """The classifier to measure (``path``, else the shipped one when present; none with ``none``) and the
    knowledge base it was trained with, checked against each other."""
    classifier = None
    path = None if none else path or (SHIPPED if SHIPPED.exists() else None)
    if path is not None:
        from worker.classifier import HarmClassifier

        classifier = HarmClassifier.load(path)
    kb = build_kb(classifier.kb_external if classifier else [])
    if classifier is not None:
        classifier.check_kb(kb)
    return classifier, kb


def timed(fn, items):  # type: ignore[no-untyped-def]
    fn(items[0])  # warm-up
    out = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - started) * 1000)
    return out


def fresh() -> None:
    """The encoder's memo emptied, the empty post text encoded again (a worker has it memoised)."""
    from worker.encoder import shared_encoder

    encoder = shared_encoder()
    encoder.forget()
    encoder.encode([""])


def analyzers(ocr, baseline, kb, classifier):  # type: ignore[no-untyped-def]
    """Each variant's function over a group of memes -> each meme's share of the time, in ms."""
    today = EmbeddedAnalyzer(kb, ocr.read, classifier, ocr_many=ocr.read_many)
    before = EmbeddedAnalyzer(kb, baseline.read, classifier)

    def one_by_one(analyzer):  # type: ignore[no-untyped-def]
        def run(group):  # type: ignore[no-untyped-def]
            out = []
            for frames in group:
                fresh()
                started = time.perf_counter()
                analyzer.analyze(AnalysisInput(frames))
                out.append((time.perf_counter() - started) * 1000)
            return out

        return run

    def batched(size):  # type: ignore[no-untyped-def]
        def run(group):  # type: ignore[no-untyped-def]
            out = []
            for start in range(0, len(group), size):
                part = group[start : start + size]
                fresh()
                started = time.perf_counter()
                today.analyze_batch([AnalysisInput(frames) for frames in part])
                out += [(time.perf_counter() - started) * 1000 / len(part)] * len(part)
            return out

        return run

    return {
        "before, 1 a call": one_by_one(before),
        "today, 1 a call": one_by_one(today),
        "today, 8 a call": batched(8),
        "today, 32 a call": batched(32),
    }


def in_turns(variants, memes, group=32):  # type: ignore[no-untyped-def]
    """Every variant over each group of memes in turn (after one warm-up group each)."""
    for run in variants.values():
        run(memes[:8])
    times = {name: [] for name in variants}
    for start in range(0, len(memes), group):
        for name, run in variants.items():
            times[name] += run(memes[start : start + group])
    return times


def encoder_rows(texts):  # type: ignore[no-untyped-def]
    from worker.encoder import SentenceEncoder

    fresh_encoder = SentenceEncoder(cache_size=0)
    rows = {}
    for size in (1, 8, 32):
        calls = [texts[i : i + size] for i in range(0, len(texts), size)]
        per_call = timed(fresh_encoder.encode, calls)
        rows[f"encoder, {size} a call"] = [t / len(c) for t, c in zip(per_call, calls, strict=True) for _ in c]
    return rows


def feeling_stage(classifier, kb, texts):  # type: ignore[no-untyped-def]
    """What the emotion and attack-style readers add per meme: their reading of one text whose knowledge-base
    matches and sentence vector the analyzer has already computed for the harm classifier (the emotion
    reader's word cut included)."""
    from worker.feeling import words_of
    from worker.match_reading import read

    matches = [read(kb.match(t), t) for t in texts]
    vectors = classifier.semantic.vectors(texts) if classifier.semantic is not None else None

    def one(i: int) -> None:
        row = None if vectors is None else vectors[i : i + 1]
        if classifier.emotion is not None:
            classifier.emotion.read([texts[i]], [matches[i]], row, words_of(kb, [texts[i]]))
        if classifier.attack is not None:
            classifier.attack.read([texts[i]], [matches[i]], row)

    return one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memes", type=int, default=128)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "toxicn_mm")
    parser.add_argument(
        "--classifier",
        type=Path,
        help="artefact from `memeguard train` (default: the shipped "
        "one, .memeguard/models/current.joblib, when present)",
    )
    parser.add_argument("--no-classifier", action="store_true", help="OCR and the bundled knowledge base only")
    parser.add_argument("--json", type=Path, dest="json_path")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    frames = [decode_frames(render_meme(c), 1) for c in captions(args.data_dir, args.memes, args.seed)]
    ocr, baseline = ChineseOcr(threads=1), BaselineOcr(threads=1)
    classifier, kb = classifier_and_kb(args.classifier, args.no_classifier)
    rows = {"OCR before": timed(baseline.read, frames), "OCR today": timed(ocr.read, frames)}
    texts = ocr.read_many(frames)
    if classifier is not None and classifier.semantic is not None:
        rows.update(encoder_rows(texts))
    if classifier is not None and (classifier.emotion is not None or classifier.attack is not None):
        rows["feeling"] = timed(feeling_stage(classifier, kb, texts), list(range(len(frames))))
    rows.update(in_turns(analyzers(ocr, baseline, kb, classifier), frames))
    report = {
        name: {
            "p50_ms": float(np.percentile(v, 50)),
            "p95_ms": float(np.percentile(v, 95)),
            "memes_per_s": 1000 / float(np.mean(v)),
        }
        for name, v in rows.items()
    }
    before = report["before, 1 a call"]["memes_per_s"]
    ratios = {name: r["memes_per_s"] / before for name, r in report.items() if name.startswith("today")}
    hardware = f"{cpu_model()} ({platform.machine()}), 1 pinned core of {os.cpu_count()}, {platform.python_version()}"
    show(hardware, args, classifier, kb, report, ratios)
    if args.json_path:
        args.json_path.write_text(
            json.dumps(
                {
                    "hardware": hardware,
                    "memes": args.memes,
                    "classifier": classifier.version if classifier else None,
                    "kb": kb.version,
                    "encoder_id": classifier.trained.get("encoder") if classifier else None,
                    **report,
                    "throughput_vs_before": ratios,
                },
                indent=2,
            )
        )


def show(hardware, args, classifier, kb, report, ratios):  # type: ignore[no-untyped-def]
    print(
        f"embedded analyzer per meme — {hardware}, {args.memes} rendered train captions, "
        f"classifier={classifier.version if classifier else 'no'} (encoder "
        f"{classifier.trained.get('encoder', 'none') if classifier else 'none'}), knowledge base {kb.version}"
    )
    print(f"{'stage':<20}{'p50 ms':>10}{'p95 ms':>10}{'memes/s':>10}{'vs before':>11}   target p95 <= 300 ms, >= 2x")
    for name, r in report.items():
        ratio = f"{ratios[name]:.2f}x" if name in ratios else ""
        print(f"{name:<20}{r['p50_ms']:>10.0f}{r['p95_ms']:>10.0f}{r['memes_per_s']:>10.1f}{ratio:>11}")


if __name__ == "__main__":
    main()
