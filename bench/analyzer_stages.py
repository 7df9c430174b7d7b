"""Where the embedded analyzer's time goes, per meme, on ONE pinned CPU core (issue 20's "measure first").

Each rendered meme (ToxiCN MM train-split captions; the test split is never read here) is read once, stage by
stage, with nothing memoised between memes:

- ``decode``: the image bytes to frames (what the pipeline does before the analyzer);
- ``ocr_det`` / ``ocr_rec``: text detection (with cropping the lines) and recognition (ONNX Runtime, one
  thread); ``ocr_other``: the rest of the OCR call. ``--before``: the reader before issue 20
  (bench/baseline_ocr.py), with RapidOCR's own detection and recognition timings;
- ``kb``: knowledge-base matching and the reading of the matches (negation, contrast, counter-speech);
- ``encoder``: the sentence encoder on the meme's text and on its (empty) post context, a fresh encoder so
  nothing is memoised (only with a classifier trained with the encoder);
- ``classifier``: the rest of the classifier's reading (n-grams, voters, emotion and attack-style readers), the
  encoder's vectors already computed;
- ``verdict``: what the analyzer adds after that (explanation, signals);
- ``whole``: the analyzer as a worker calls it, for the total (its own run: the sum of the stages above is
  within noise of it).

Prints a table (p50, p95, mean and the mean's share of the whole); --json PATH writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer import captions, classifier_and_kb  # noqa: E402  (bench/, the script's own folder)
from baseline_ocr import BaselineOcr  # noqa: E402
from hardware import cpu_model  # noqa: E402

from memeguard.imaging import decode_frames  # noqa: E402
from worker.analyzers import AnalysisInput  # noqa: E402
from worker.analyzers.embedded import EmbeddedAnalyzer  # noqa: E402
from worker.knowledge import joined  # noqa: E402
from worker.match_reading import read  # noqa: E402
from worker.ocr import MAX_SIDE, MIN_SCORE, ChineseOcr  # noqa: E402
from worker.samples import render_meme  # noqa: E402


def clock(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - started) * 1000


def ocr_stages(ocr: ChineseOcr, frame: Any) -> tuple[str, dict[str, float]]:
    """The OCR of one frame: detection (with the crops) and recognition timed apart, then the whole ``read``
    (``ocr_other``: what it spends beyond those two — ordering, filtering, the image copy)."""
    crops, det = clock(lambda: ocr.detect_lines(frame))
    _, rec = clock(lambda: ocr.recognise(crops))
    text, total = clock(lambda: ocr.read([frame]))
    return text, {"ocr_det": det, "ocr_rec": rec, "ocr_other": max(0.0, total - det - rec)}


def ocr_stages_before(ocr: BaselineOcr, frame: Any) -> tuple[str, dict[str, float]]:
    """The OCR of one frame as the reader before issue 20 did it, with RapidOCR's detection and recognition
    times."""
    image = frame.copy()
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    (result, elapse), total = clock(lambda: ocr._engine(np.asarray(image.convert("RGB"))))
    det, _cls, rec = (float(x) * 1000 for x in (elapse or [0.0, 0.0, 0.0]))
    boxes = [(box[0][1], box[0][0], text) for box, text, score in result or [] if float(score) >= MIN_SCORE]
    text = "\n".join(t.strip() for _, _, t in sorted(boxes) if t.strip())
    return text, {"ocr_det": det, "ocr_rec": rec, "ocr_other": max(0.0, total - det - rec)}


def read_one(data: bytes, ocr: Any, kb: Any, classifier: Any, analyzer: Any, encoder: Any) -> dict[str, float]:
    """One meme, stage by stage, then whole; the encoder's memo is emptied before each encoding."""
    frames, decode_ms = clock(lambda: decode_frames(data, 1))
    stages = ocr_stages_before if isinstance(ocr, BaselineOcr) else ocr_stages
    text, ocr_ms = stages(ocr, frames[0])
    whole_text = joined(text, "", "")
    matches, kb_ms = clock(lambda: read(kb.match(whole_text), whole_text))
    timings = {"decode": decode_ms, **ocr_ms, "kb": kb_ms}
    if encoder is not None:
        encoder.encode([""])  # an empty post context: memoised in a worker too
        encoder.forget()
        _, timings["encoder"] = clock(lambda: classifier.semantic.vectors([text]))
    if classifier is not None:
        _, timings["classifier"] = clock(lambda: classifier.predict([text], kb, [matches], [""]))
    _, after_ocr = clock(lambda: analyzer.read_text(text))
    timings["verdict"] = max(0.0, after_ocr - kb_ms - timings.get("classifier", 0.0))
    if encoder is not None:
        encoder.forget()
    _, timings["whole"] = clock(lambda: analyzer.analyze(AnalysisInput(frames)))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "toxicn_mm")
    parser.add_argument("--classifier", type=Path, help="artefact (default: the shipped one when present)")
    parser.add_argument("--no-classifier", action="store_true", help="OCR and the bundled knowledge base only")
    parser.add_argument("--before", action="store_true", help="the OCR reader before issue 20 (baseline_ocr.py)")
    parser.add_argument("--json", type=Path, dest="json_path")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    images = [render_meme(c) for c in captions(args.data_dir, args.memes, args.seed)]
    ocr: Any = BaselineOcr(threads=1) if args.before else ChineseOcr(threads=1)
    classifier, kb = classifier_and_kb(args.classifier, args.no_classifier)
    kb.warm()
    if classifier is not None:
        classifier.warm()
    analyzer = EmbeddedAnalyzer(kb, ocr.read, classifier)
    stages: dict[str, list[float]] = {}

    def add(name: str, ms: float) -> None:
        stages.setdefault(name, []).append(ms)

    encoder = None
    if classifier is not None and classifier.semantic is not None:
        from worker.encoder import shared_encoder

        encoder = shared_encoder()  # the one the classifier reads with
    for warm_up, data in [(True, images[0]), *((False, d) for d in images)]:
        timings = read_one(data, ocr, kb, classifier, analyzer, encoder)
        if not warm_up:
            for name, ms in timings.items():
                add(name, ms)
    whole = float(np.mean(stages["whole"]))
    report = {
        name: {
            "p50_ms": round(float(np.percentile(v, 50)), 2),
            "p95_ms": round(float(np.percentile(v, 95)), 2),
            "mean_ms": round(float(np.mean(v)), 2),
            "share_of_whole": round(float(np.mean(v)) / whole, 3),
        }
        for name, v in stages.items()
    }
    hardware = f"{cpu_model()} ({platform.machine()}), 1 pinned core of {os.cpu_count()}, {platform.python_version()}"
    print(
        f"embedded analyzer per stage ({'before issue 20' if args.before else 'today'}) — {hardware}, "
        f"{args.memes} rendered train captions, "
        f"classifier={classifier.version if classifier else 'no'}, knowledge base {kb.version}"
    )
    print(f"{'stage':<12}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}{'share':>8}")
    for name, r in report.items():
        print(f"{name:<12}{r['p50_ms']:>10.1f}{r['p95_ms']:>10.1f}{r['mean_ms']:>10.1f}{r['share_of_whole']:>8.0%}")
    if args.json_path:
        payload = {"hardware": hardware, "memes": args.memes, "kb": kb.version, "stages": report}
        payload["classifier"] = classifier.version if classifier else None
        args.json_path.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
