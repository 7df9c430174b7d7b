"""Embedded analyzer cost per meme on ONE CPU core (the process is pinned; ONNX Runtime and the sentence
encoder, whose default is one thread, get one thread each).

Memes are ToxiCN MM train-split captions rendered with a CJK font (the test split is never read here).
Stages: OCR alone, the sentence encoder alone (one caption, nothing memoised), the emotion and attack-style
readers alone (one text whose matches and vector are already computed: what they add), and the whole analyzer (OCR +
knowledge base + classifier, with the encoder when the artefact was trained with it, and the external
knowledge bases it was trained with; --classifier PATH, else the shipped one from `make model` when present,
--no-classifier for OCR + knowledge base only).
Prints a table; --json PATH writes the figures. Target (issue 3): p95 <= 300 ms per meme on one core.
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

from hardware import cpu_model  # noqa: E402  (bench/, the script's own folder)

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


def feeling_stage(classifier, kb, texts):  # type: ignore[no-untyped-def]
    """What the emotion and attack-style readers add per meme: their reading of one text whose knowledge-base
    matches and sentence vector the analyzer has already computed for the harm classifier."""
    from worker.match_reading import read

    matches = [read(kb.match(t), t) for t in texts]
    vectors = classifier.semantic.vectors(texts) if classifier.semantic is not None else None

    def one(i: int) -> None:
        row = None if vectors is None else vectors[i : i + 1]
        for reader in (classifier.emotion, classifier.attack):
            if reader is not None:
                reader.read([texts[i]], [matches[i]], row)

    return one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memes", type=int, default=100)
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
    ocr = ChineseOcr(threads=1)
    classifier, kb = classifier_and_kb(args.classifier, args.no_classifier)
    analyzer = EmbeddedAnalyzer(kb, ocr.read, classifier)
    rows = {"ocr": timed(ocr.read, frames)}
    if classifier is not None and classifier.semantic is not None:
        from worker.encoder import SentenceEncoder

        fresh, texts = SentenceEncoder(cache_size=0), [ocr.read(f) for f in frames]
        rows["encoder"] = timed(lambda t: fresh.encode([t]), texts)
    if classifier is not None and (classifier.emotion is not None or classifier.attack is not None):
        rows["feeling"] = timed(feeling_stage(classifier, kb, [ocr.read(f) for f in frames]), list(range(len(frames))))
    rows["analyzer"] = timed(lambda f: analyzer.analyze(AnalysisInput(f)), frames)
    report = {
        name: {
            "p50_ms": float(np.percentile(v, 50)),
            "p95_ms": float(np.percentile(v, 95)),
            "memes_per_s": 1000 / float(np.mean(v)),
        }
        for name, v in rows.items()
    }
    hardware = f"{cpu_model()} ({platform.machine()}), 1 pinned core of {os.cpu_count()}, {platform.python_version()}"
    print(
        f"embedded analyzer per meme — {hardware}, {args.memes} rendered train captions, "
        f"classifier={classifier.version if classifier else 'no'} (encoder "
        f"{classifier.trained.get('encoder', 'none') if classifier else 'none'}), knowledge base {kb.version}"
    )
    print(f"{'stage':<12}{'p50 ms':>10}{'p95 ms':>10}{'memes/s':>10}   target p95 <= 300 ms")
    for name, r in report.items():
        print(f"{name:<12}{r['p50_ms']:>10.0f}{r['p95_ms']:>10.0f}{r['memes_per_s']:>10.1f}")
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
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
