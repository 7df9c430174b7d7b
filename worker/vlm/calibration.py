"""Temperature scaling of the VLM's harm-type probabilities, fitted on labelled memes (``memeguard calibrate``).

The fast path's confidence is the softmax over the allowed harm codes. A model's softmax is rarely calibrated
(large models are usually over-confident), and policies act on thresholds (block at ≥ 0.85, tag below…), so
the confidence must mean what it says. One temperature T (Guo et al., 2017): p_T(k) ∝ p(k)^(1/T), the same as
softmax(logits / T). It never changes the chosen label (monotone), and T is fitted by minimising the negative
log-likelihood of human labels. A calibration names the model version it was fitted for (model type, quant,
prompt digest): a worker serving another one refuses it — "recalibrate" — instead of trusting stale numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from worker.analyzers.base import AnalysisInput
    from worker.datasets import LabelledItem

FORMAT = 1
T_RANGE = (0.05, 20.0)  # searched on a log scale


class HarmReader(Protocol):
    def harm_probabilities(self, items: list[AnalysisInput]) -> list[dict[str, float]]: ...


@dataclass(frozen=True)
class Calibration:
    temperature: float
    model: str  # the VlmAnalyzer version (uncalibrated) it was fitted for
    fitted_on: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float

    def apply(self, probs: Mapping[str, float]) -> dict[str, float]:
        return scaled(probs, self.temperature)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"format": FORMAT, **asdict(self)}, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Calibration:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.pop("format", None) != FORMAT:
            raise ValueError(f"{path}: not a memeguard VLM calibration (format {FORMAT}); run `memeguard calibrate`")
        return cls(**data)

    def check(self, model: str) -> None:
        """Refuse a calibration fitted for another model, quantisation or prompt."""
        if self.model != model:
            raise ValueError(
                f"VLM calibration was fitted for {self.model!r}, this worker serves {model!r}: "
                "recalibrate with `memeguard calibrate`"
            )


def scaled(probs: Mapping[str, float], temperature: float) -> dict[str, float]:
    """p(k)^(1/T), renormalised (log-space, so tiny probabilities do not underflow)."""
    logs = {k: math.log(max(p, 1e-300)) / temperature for k, p in probs.items()}
    top = max(logs.values())
    weights = {k: math.exp(v - top) for k, v in logs.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def nll(rows: Sequence[Mapping[str, float]], labels: Sequence[str], temperature: float) -> float:
    """Mean negative log-likelihood of the true labels under the scaled probabilities."""
    return -sum(
        math.log(max(scaled(row, temperature)[label], 1e-12)) for row, label in zip(rows, labels, strict=True)
    ) / max(1, len(rows))


def ece(rows: Sequence[Mapping[str, float]], labels: Sequence[str], temperature: float) -> float:
    """Expected calibration error of the chosen label's scaled probability (the verdict's confidence)."""
    from worker.evaluation import expected_calibration_error

    chosen = [max(row, key=row.__getitem__) for row in rows]
    confidence = [scaled(row, temperature)[c] for row, c in zip(rows, chosen, strict=True)]
    return expected_calibration_error([int(c == y) for c, y in zip(chosen, labels, strict=True)], confidence)


def fit(rows: Sequence[Mapping[str, float]], labels: Sequence[str], model: str) -> Calibration:
    """The temperature with the lowest NLL on (rows, labels): golden-section search over log T (the NLL of
    temperature scaling is unimodal in T)."""
    if len(rows) < 2 or len(rows) != len(labels):
        raise ValueError("calibration needs at least two labelled items, one label per row")
    if any(label not in row for row, label in zip(rows, labels, strict=True)):
        raise ValueError("a label is not one of the allowed codes")
    low, high = (math.log(t) for t in T_RANGE)
    t = math.exp(_golden(lambda log_t: nll(rows, labels, math.exp(log_t)), low, high))
    return Calibration(
        round(t, 4),
        model,
        len(rows),
        nll(rows, labels, 1.0),
        nll(rows, labels, t),
        ece(rows, labels, 1.0),
        ece(rows, labels, t),
    )


def _golden(func: Callable[[float], float], low: float, high: float, steps: int = 60) -> float:
    """Minimum of a unimodal function on [low, high] (60 steps: the bracket shrinks by 0.618^60 ≈ 3e-13)."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(steps):
        if func(c) < func(d):
            b, d = d, c
            c = b - ratio * (b - a)
        else:
            a, c = c, d
            d = a + ratio * (b - a)
    return (a + b) / 2


def harm_code(harm_type: int) -> str:
    """The prompt's code of a dataset harm-type id (ToxiCN's 0..4 are HarmType's members in order)."""
    from memeguard.schemas import HarmType
    from worker.vlm.prompt import CODES

    wanted = list(HarmType)[harm_type]
    return next(code for code, harm in CODES.harm.items() if harm is wanted)


def collect(
    analyzer: HarmReader,
    items: Sequence[LabelledItem],
    batch_size: int = 8,
    progress: Callable[[Sequence[int], str], Iterable[int]] = lambda starts, _: starts,
) -> tuple[list[dict[str, float]], list[str]]:
    """Each item rendered as a meme (as the evaluation harness does; its description as the post text) and
    read by the VLM's fast path in batches: the raw harm distributions and the human labels' codes."""
    from memeguard.imaging import decode_frames
    from worker.analyzers.base import AnalysisInput
    from worker.samples import render_meme

    rows: list[dict[str, float]] = []
    for start in progress(range(0, len(items), batch_size), f"batches of {batch_size}"):
        chunk = items[start : start + batch_size]
        rows += analyzer.harm_probabilities(
            [AnalysisInput(decode_frames(render_meme(i.text or " "), 1), post_text=i.context) for i in chunk]
        )
    return rows, [harm_code(i.harm) for i in items]
