"""OCR read-back and cost on ONE pinned core: the reader before issue 20 (bench/baseline_ocr.py) and today's
(worker/ocr.py), and the variants issue 20 tried, on the same rendered memes in one run.

Memes: ToxiCN MM **train** captions (the test split is never read here) rendered as the analyzer bench renders
them (480 px canvas, 34 px text), and a harder set of the same captions with small text on a large canvas
(960 px, 22 px text) — the case a smaller detector input would lose first. Each caption's truth is the text the
font can draw, whitespace removed; a reading is compared after NFKC (full- and half-width punctuation alike).

A third set is ToxiCN **train** comments that show a character PP-OCRv4's recogniser cannot write (``--rare``):
what the PP-OCRv5 recogniser was adopted for.

Figures per variant: exact-match rate (the whole caption read back), character error rate (edit distance /
caption length, over all captions), and OCR time per meme (mean, p95). Recognition batching is measured as
``read_many`` over groups of 1, 8 and 32 memes with 1, 8 and 32 lines per recogniser call. The int8 variants are
statically quantised (QDQ, per channel, MinMax calibration on 64 other train captions) from the wheel's models
after the same graph rewrites, made once into ``.memeguard/cache/ocr-int8`` (nothing is downloaded).

    python bench/ocr_readback.py [--memes 500] [--small 100] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer import captions  # noqa: E402  (bench/, the script's own folder)
from baseline_ocr import BaselineOcr  # noqa: E402
from hardware import cpu_model  # noqa: E402
from PIL import Image  # noqa: E402

from memeguard.imaging import decode_frames  # noqa: E402
from worker.ocr import RECOGNISERS, ChineseOcr  # noqa: E402
from worker.samples import drawn_text, render_meme  # noqa: E402

CACHE = ROOT / ".memeguard" / "cache" / "ocr-int8"
PPOCRV4 = RECOGNISERS["ppocrv4"]
Frames = list[Image.Image]


def rendered(texts: list[str], size: tuple[int, int], font_size: int) -> tuple[list[Frames], list[str]]:
    memes = [decode_frames(render_meme(t, size=size, font_size=font_size), 1) for t in texts]
    return memes, [normal(drawn_text(t, font_size)) for t in texts]


def normal(text: str) -> str:
    return unicodedata.normalize("NFKC", "".join(text.split()))


def edits(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def rare_comments(data_dir: Path, n: int, seed: int) -> list[str]:
    """The first 60 characters of ``n`` ToxiCN **train** comments that show a CJK character outside PP-OCRv4's
    table: evasive and traditional spellings (龜男, 蝻人), the text a moderator most needs read."""
    table = ChineseOcr(threads=1, recogniser="ppocrv4").charset
    rows = json.loads((data_dir / "train.json").read_text(encoding="utf-8"))
    found = [
        str(r["content"])[:60] for r in rows if any("\u4e00" <= c <= "\u9fff" and c not in table for c in r["content"])
    ]
    random.Random(seed).shuffle(found)
    return found[:n]


def scored(texts: Sequence[str], truth: Sequence[str], times: Sequence[float]) -> dict[str, float]:
    read = [normal(t) for t in texts]
    return {
        "exact_match": sum(r == t for r, t in zip(read, truth, strict=True)) / len(truth),
        "cer": sum(edits(r, t) for r, t in zip(read, truth, strict=True)) / max(1, sum(len(t) for t in truth)),
        "ms_mean": float(np.mean(times)),
        "ms_p95": float(np.percentile(times, 95)),
    }


def per_meme(read: Callable[[Frames], str], memes: list[Frames]) -> tuple[list[str], list[float]]:
    read(memes[0])  # warm-up
    texts, times = [], []
    for frames in memes:
        started = time.perf_counter()
        texts.append(read(frames))
        times.append((time.perf_counter() - started) * 1000)
    return texts, times


def per_batch(ocr: ChineseOcr, memes: list[Frames], size: int) -> tuple[list[str], list[float]]:
    """``read_many`` over groups of ``size``; each meme's time is its group's time shared equally."""
    ocr.read_many(memes[:size])
    texts: list[str] = []
    times: list[float] = []
    for start in range(0, len(memes), size):
        group = memes[start : start + size]
        began = time.perf_counter()
        texts += ocr.read_many(group)
        times += [(time.perf_counter() - began) * 1000 / len(group)] * len(group)
    return texts, times


def int8_reader(calibration: list[Frames]) -> ChineseOcr:
    """Today's reader with statically quantised models (made once, then cached)."""
    import worker.ocr as ocr_module

    paths = {model: CACHE / f"{Path(model[1]).stem}.int8.onnx" for model in (ocr_module.DETECTOR, PPOCRV4)}
    if not all(p.exists() for p in paths.values()):
        quantise(calibration, paths)
    reader = ChineseOcr(threads=1, recogniser="ppocrv4")
    reader._det = ocr_module._session(paths[ocr_module.DETECTOR].read_bytes(), 1)
    reader._rec = ocr_module._session(paths[PPOCRV4].read_bytes(), 1)
    reader._det_input, reader._rec_input = reader._det.get_inputs()[0].name, reader._rec.get_inputs()[0].name
    return reader


def quantise(calibration: list[Frames], paths: dict[tuple[str, str], Path]) -> None:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    import worker.ocr as ocr_module

    inputs = calibration_inputs(calibration)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self, name: str, xs: list[np.ndarray]) -> None:
            self.rows = iter([{name: x} for x in xs])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.rows, None)

    CACHE.mkdir(parents=True, exist_ok=True)
    for model, path in paths.items():
        source = CACHE / f"{Path(model[1]).stem}.opset17.onnx"
        onnx.save(version_converter.convert_version(onnx.load_from_string(ocr_module.fused_model(model)), 17), source)
        quantize_static(
            str(source),
            str(path),
            Reader(ocr_module._session(source.read_bytes(), 1).get_inputs()[0].name, inputs[model]),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"],
        )


def calibration_inputs(memes: list[Frames]) -> dict[tuple[str, str], list[np.ndarray]]:
    """The detector's and the recogniser's inputs for ``memes``, as today's reader prepares them."""
    import worker.ocr as ocr_module

    reader, det, rec = ChineseOcr(threads=1, recogniser="ppocrv4"), [], []
    for frames in memes:
        image = ocr_module._pixels(frames[0])
        det.append(ocr_module.detector_input(image, ocr_module.detector_side(max(image.shape[:2]))))
        for crop in reader.detect_lines(frames[0]):
            ratio = max(ocr_module.REC_MIN_WIDTH / ocr_module.REC_HEIGHT, crop.shape[1] / crop.shape[0])
            rec.append(ocr_module._normalised_line(crop, ratio)[np.newaxis])
    return {ocr_module.DETECTOR: det, PPOCRV4: rec}


def variants(args: argparse.Namespace, calibration: list[Frames]) -> dict[str, Callable[[list[Frames]], Any]]:
    baseline, today = BaselineOcr(threads=1), ChineseOcr(threads=1)
    older = ChineseOcr(threads=1, recogniser="ppocrv4")
    found: dict[str, Callable[[list[Frames]], Any]] = {
        "before (4336611)": lambda memes: per_meme(baseline.read, memes),
        "today": lambda memes: per_meme(today.read, memes),
        "today, PP-OCRv4 recogniser": lambda memes: per_meme(older.read, memes),
    }
    for group, lines in ((8, 1), (8, 8), (32, 1), (32, 32)):
        reader = ChineseOcr(threads=1, rec_batch=lines)
        found[f"today, {group} memes a pass, {lines} lines a call"] = lambda memes, r=reader, g=group: per_batch(
            r, memes, g
        )
    if not args.no_int8:
        quantised = int8_reader(calibration)
        found["today, PP-OCRv4 + int8 models (not adopted)"] = lambda memes: per_meme(quantised.read, memes)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memes", type=int, default=500)
    parser.add_argument("--small", type=int, default=100, help="memes in the small-text set (960 px, 22 px text)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "toxicn_mm")
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--rare", type=int, default=100, help="comments showing a character PP-OCRv4 cannot write")
    parser.add_argument("--text-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "toxicn_text")
    parser.add_argument("--json", type=Path, dest="json_path")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    texts = captions(args.data_dir, args.memes + 64, args.seed)
    sets = {
        "480 px, 34 px text": rendered(texts[: args.memes], (480, 400), 34),
        "960 px, 22 px text": rendered(texts[: args.small], (960, 800), 22),
    }
    if args.rare:
        sets["rare characters, 480 px"] = rendered(rare_comments(args.text_dir, args.rare, args.seed), (480, 400), 34)
    calibration = rendered(texts[args.memes :], (480, 400), 34)[0]
    report: dict[str, dict[str, dict[str, float]]] = {}
    for name, measure in variants(args, calibration).items():
        report[name] = {}
        for label, (memes, truth) in sets.items():
            texts, times = measure(memes)
            report[name][label] = scored(texts, truth, times)
    show(report, args)
    if args.json_path:
        args.json_path.write_text(json.dumps({"hardware": hardware(), "memes": args.memes, **report}, indent=2))


def hardware() -> str:
    return f"{cpu_model()} ({platform.machine()}), 1 pinned core of {os.cpu_count()}, {platform.python_version()}"


def show(report: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace) -> None:
    print(f"OCR read-back — {hardware()}, {args.memes} + {args.small} rendered train captions")
    print(f"{'variant':<44}{'set':<22}{'exact':>8}{'CER':>9}{'ms/meme':>9}{'p95':>8}")
    for name, sets in report.items():
        for label, r in sets.items():
            print(
                f"{name:<44}{label:<22}{r['exact_match']:>8.3f}{r['cer']:>9.4f}{r['ms_mean']:>9.1f}{r['ms_p95']:>8.1f}"
            )


if __name__ == "__main__":
    main()
