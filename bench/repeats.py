"""Known memes through the real pipeline: which edits still match, and what a repeat-heavy stream saves.

Memes are ToxiCN MM **train** captions rendered on the sample templates (the test split is never read
here), run through Producer -> process_job with the embedded analyzer and the fingerprint stage on a
SQLite database (the embedded deployment), one process.

1. Robustness: each original is processed, then each edited copy (JPEG quality 30, resized to 50 %, 5 %
   cropped from every side, caption changed) as a new upload with the same post text. Reported per edit:
   PDQ distance (median / max), share within the PDQ (31) or pHash (8) bank distance, and share whose
   verdict was reused from the original -- which must be 0 for a changed caption.
2. Replay: a stream where ``--repeat-share`` of the items repeat an earlier meme (re-encoded JPEG 85, same
   post text). Counts analyzer invocations against the number of items, and checks that every repeat's
   verdict equals its original's.

Prints two tables; ``--json PATH`` writes both.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import random
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from banks.signals import hash_frame  # noqa: E402
from composition.runtime import Runtime  # noqa: E402
from jobs import store  # noqa: E402
from memeguard.imaging import decode_frames  # noqa: E402
from memeguard.migrate import upgrade  # noqa: E402
from memeguard.settings import Settings  # noqa: E402
from worker.analyzers.base import AnalysisInput, AnalysisResult  # noqa: E402
from worker.analyzers.embedded import EmbeddedAnalyzer  # noqa: E402
from worker.pipeline import process_job  # noqa: E402
from worker.samples import TEMPLATES, render_meme  # noqa: E402


@dataclass
class Counting:
    """The real embedded analyzer, counting invocations (what the fingerprint stage must save)."""

    inner: EmbeddedAnalyzer
    calls: int = 0
    name: str = "embedded"
    version: str = "bench"
    needs_pixels: bool = True

    def analyze(self, item: AnalysisInput) -> AnalysisResult:
        self.calls += 1
        return self.inner.analyze(item)

    def read_image_text(self, frames: list[Image.Image]) -> str:
        return self.inner.read_image_text(frames)


def encode(image: Image.Image, quality: int = 95) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def edits(original: bytes, changed_caption: bytes) -> dict[str, bytes]:
    image = decode_frames(original, 1)[0]
    w, h = image.size
    return {
        "jpeg_30": encode(image, 30),
        "resize_50": encode(image.resize((w // 2, h // 2)), 92),
        "crop_5": encode(image.crop((w // 20, h // 20, w - w // 20, h - h // 20)), 92),
        "caption_changed": changed_caption,
    }


class Bench:
    def __init__(self, data_dir: Path) -> None:
        settings = Settings(data_dir=data_dir, bank_refresh_s=0.001)
        upgrade(settings.effective_database_url)
        self.runtime = Runtime(settings)
        self.analyzer = Counting(EmbeddedAnalyzer.default())
        self.runtime.analyzer = self.analyzer  # type: ignore[assignment]
        self.n = 0

    def run(self, data: bytes, post_text: str) -> Any:
        self.n += 1
        job_id = self.runtime.producer.submit(data, f"item-{self.n}", tenant="bench", post_text=post_text).job_id
        process_job(job_id, self.runtime.deps)
        with self.runtime.sessions() as session:
            return store.verdict_of(session, job_id)


def reused(verdict: Any) -> bool:
    return any("reused verdict" in e for s in verdict.signals for e in s.evidence)


def same(a: Any, b: Any) -> bool:
    return (a.emotion, a.intent, a.harm_type, a.confidence) == (b.emotion, b.intent, b.harm_type, b.confidence)


def robustness(bench: Bench, captions: list[str]) -> dict[str, dict[str, float]]:
    rows: dict[str, list[tuple[int, bool, bool]]] = {}
    for i, text in enumerate(captions):
        template = TEMPLATES[i % 4]
        original = render_meme(text, template)
        post = f"配文{i}"
        bench.run(original, post)
        base = hash_frame(decode_frames(original, 1)[0])
        other = render_meme(captions[(i + 1) % len(captions)], template)
        for name, data in edits(original, other).items():
            edited = hash_frame(decode_frames(data, 1)[0])
            distance = bin(base.pdq ^ edited.pdq).count("1")
            within = distance <= 31 or bin(base.phash ^ edited.phash).count("1") <= 8
            rows.setdefault(name, []).append((distance, within, reused(bench.run(data, post))))
    return {
        name: {
            "pdq_median": statistics.median(d for d, _, _ in r),
            "pdq_max": max(d for d, _, _ in r),
            "image_match": sum(w for _, w, _ in r) / len(r),
            "verdict_reused": sum(u for _, _, u in r) / len(r),
        }
        for name, r in rows.items()
    }


def replay(bench: Bench, captions: list[str], items: int, share: float, rng: random.Random) -> dict[str, float]:
    originals: list[tuple[bytes, str, Any]] = []
    calls_before, repeats, equal, unique = bench.analyzer.calls, 0, 0, iter(captions)
    for i in range(items):
        if originals and rng.random() < share:
            data, post, first = rng.choice(originals)
            verdict = bench.run(encode(decode_frames(data, 1)[0], 85), post)
            repeats, equal = repeats + 1, equal + same(verdict, first)
        else:
            data, post = render_meme(next(unique), TEMPLATES[i % 4]), f"帖子{i}"
            originals.append((data, post, bench.run(data, post)))
    calls = bench.analyzer.calls - calls_before
    return {
        "items": items,
        "repeats": repeats,
        "repeat_share": repeats / items,
        "model_calls": calls,
        "calls_saved_share": 1 - calls / items,
        "repeats_equal_original": equal / max(repeats, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memes", type=int, default=40, help="originals for the robustness table")
    parser.add_argument("--items", type=int, default=300, help="length of the replayed stream")
    parser.add_argument("--repeat-share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "toxicn_mm")
    parser.add_argument("--json", type=Path, dest="json_path")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = json.loads((args.data_dir / "train_2.0.json").read_text(encoding="utf-8"))
    rng.shuffle(rows)
    captions = [str(r["text"]).strip() for r in rows if 4 <= len(str(r["text"]).strip()) <= 40]
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        table = robustness(bench, captions[: args.memes])
        stream = replay(bench, captions[args.memes :], args.items, args.repeat_share, rng)
    print(f"fingerprint robustness — {args.memes} rendered train captions, {platform.machine()}")
    print(f"{'edit':<17}{'PDQ median':>11}{'PDQ max':>9}{'image match':>13}{'verdict reused':>16}")
    for name, r in table.items():
        print(
            f"{name:<17}{r['pdq_median']:>11.0f}{r['pdq_max']:>9}{r['image_match']:>13.0%}{r['verdict_reused']:>16.0%}"
        )
    print(
        f"\nreplay: {stream['items']} items, {stream['repeats']} repeats ({stream['repeat_share']:.0%}); "
        f"model calls {stream['model_calls']} (saved {stream['calls_saved_share']:.0%}); "
        f"repeats equal to their original: {stream['repeats_equal_original']:.0%}"
    )
    if args.json_path:
        args.json_path.write_text(json.dumps({"robustness": table, "replay": stream}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
