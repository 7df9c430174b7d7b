"""``VlmAnalyzer``: GLM-4.6V-Flash behind the analyzer contract, a batch per forward pass.

Per batch: pick the mode (normal / degraded) -> resize images within the mode's pixel budget -> the embedded
tier's OCR text and knowledge-base hits as fenced context -> fast path (labels from logits) -> explanation
path for the items the policy would tag or block -> verdicts whose ``vlm`` signal records mode, label
probabilities and latency. An explanation the model garbles is flagged for review (signal
``review_needed``, confidence capped), never read as "safe".
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from memeguard.metrics import VLM_ITEMS
from memeguard.schemas import Signal, Verdict, label_zh
from worker.analyzers.base import AnalysisInput, AnalysisResult, Analyzer, AnalyzerError, analyze_one
from worker.vlm import reading
from worker.vlm.calibration import Calibration
from worker.vlm.degrade import DEGRADED, NORMAL, Budget, LoadMonitor
from worker.vlm.loading import LoadedModel
from worker.vlm.prompt import CODES, SYSTEM_PROMPT, messages

UNPARSED_CONFIDENCE = 0.3
DEFAULT_BUDGETS = {NORMAL: Budget(512 * 512, 64), DEGRADED: Budget(336 * 336, 32)}


def frame_sheet(frames: list[Image.Image], max_frames: int, max_pixels: int) -> Image.Image:
    """What the model sees of an item: the still image, or for an animated meme up to ``max_frames`` evenly
    spaced frames side by side (left to right) — one image per item keeps batching simple — scaled to the
    pixel budget."""
    if len(frames) <= 1 or max_frames <= 1:
        return fit_pixels(frames[0], max_pixels)
    step = (len(frames) - 1) / (min(max_frames, len(frames)) - 1)
    picked = [frames[round(i * step)].convert("RGB") for i in range(min(max_frames, len(frames)))]
    height = min(f.height for f in picked)
    scaled = [f.resize((max(1, f.width * height // f.height), height)) for f in picked]
    sheet = Image.new("RGB", (sum(f.width for f in scaled), height), "white")
    x = 0
    for frame in scaled:
        sheet.paste(frame, (x, 0))
        x += frame.width
    return fit_pixels(sheet, max_pixels)


def fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """The image scaled down (aspect kept) to at most ``max_pixels``; RGB."""
    rgb = image.convert("RGB")
    scale = (max_pixels / (rgb.width * rgb.height)) ** 0.5
    if scale >= 1:
        return rgb
    size = (max(28, int(rgb.width * scale)), max(28, int(rgb.height * scale)))
    return rgb.resize(size, Image.Resampling.BICUBIC)


@dataclass
class VlmAnalyzer:
    loaded: LoadedModel
    reader: Analyzer | None = None  # the embedded tier: OCR text and knowledge-base hits as context
    explain_when: Callable[[Verdict], bool] = lambda _: False
    monitor: LoadMonitor = field(default_factory=LoadMonitor)
    budgets: dict[str, Budget] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    prefix_cache: bool = True  # the system prompt's KV computed once and reused by every batch
    max_frames: int = 4  # frames of an animated meme shown side by side
    calibration: Calibration | None = None  # temperature for the harm-type probabilities (memeguard calibrate)
    name: str = "vlm"
    needs_pixels: bool = True

    def __post_init__(self) -> None:
        self.code_ids = reading.code_token_ids(self.loaded.processor)
        self.prefix = reading.PrefixCache.build(self.loaded, SYSTEM_PROMPT) if self.prefix_cache else None
        digest = hashlib.sha256(SYSTEM_PROMPT.encode()).hexdigest()[:8]
        self.version = f"{self.loaded.model_type}:{self.loaded.quant}:p{digest}"
        if self.calibration is not None:
            self.calibration.check(self.version)  # fitted for this model, quantisation and prompt
            self.version += f":T{self.calibration.temperature:g}"

    def analyze(self, item: AnalysisInput) -> AnalysisResult:
        return analyze_one(self, item)

    def analyze_batch(self, items: list[AnalysisInput]) -> list[AnalysisResult | AnalyzerError]:
        """One mode, one fast-path ``generate`` and at most one explanation ``generate`` for the batch."""
        readable = [i for i, item in enumerate(items) if item.frames]
        results: dict[int, AnalysisResult | AnalyzerError] = {
            i: AnalyzerError("the VLM reads images: this item has no frame")
            for i in range(len(items))
            if i not in readable
        }
        if readable:
            results.update(zip(readable, self._run([items[i] for i in readable]), strict=True))
        return [results[i] for i in range(len(items))]

    def harm_probabilities(self, items: list[AnalysisInput]) -> list[dict[str, float]]:
        """The fast path's raw (uncalibrated) harm-code distribution per item, in normal mode: what
        ``memeguard calibrate`` fits the temperature on."""
        return [read.probs[2] for read in self._fast(items, self.budgets[NORMAL])[3]]

    def _fast(
        self, items: list[AnalysisInput], budget: Budget
    ) -> tuple[list[Verdict | None], list[str], list[Image.Image], list[reading.LabelRead]]:
        """Context (the embedded tier's findings), images within the budget, prompts, one labels pass."""
        priors = [self._prior(item) for item in items]
        images = [frame_sheet(item.frames, self.max_frames, budget.max_pixels) for item in items]
        texts = reading.prompt_texts(
            self.loaded,
            [self._conversation(item, prior, self.max_frames) for item, prior in zip(items, priors, strict=True)],
        )
        return priors, texts, images, reading.read_labels(self.loaded, texts, images, self.code_ids, self.prefix)

    def _run(self, items: list[AnalysisInput]) -> list[AnalysisResult]:
        mode = self.monitor.mode()
        budget = self.budgets[mode]
        started = time.perf_counter()
        priors, texts, images, reads = self._fast(items, budget)
        fast_ms = (time.perf_counter() - started) * 1000 / len(items)
        verdicts = [self._verdict(r, p, mode, fast_ms) for r, p in zip(reads, priors, strict=True)]
        verdicts = self._explain(verdicts, texts, images, reads, budget, mode)
        VLM_ITEMS.labels(mode, "fast").inc(len(items))
        total_ms = (time.perf_counter() - started) * 1000 / len(items)
        return [AnalysisResult(v, {"vlm_fast_ms": fast_ms, "vlm_ms": total_ms}) for v in verdicts]

    def _prior(self, item: AnalysisInput) -> Verdict | None:
        if item.prior is not None or self.reader is None:
            return item.prior
        return self.reader.analyze(item).verdict

    def _confidence(self, read: reading.LabelRead) -> float:
        """The chosen harm type's probability, temperature-scaled when a calibration is loaded."""
        if self.calibration is None:
            return read.probability(2)
        return self.calibration.apply(read.probs[2])[read.codes[2]]

    @staticmethod
    def _conversation(item: AnalysisInput, prior: Verdict | None, max_frames: int) -> list[dict[str, object]]:
        ocr = item.ocr_text if item.ocr_text is not None else (prior.ocr_text if prior else "")
        cues = [e for s in (prior.signals if prior else []) if s.source == "kb" for e in s.evidence]
        shown = min(len(item.frames), max_frames) if max_frames > 1 else 1
        return messages(item.post_text, ocr, cues, item.context, frames=shown)

    def _verdict(self, read: reading.LabelRead, prior: Verdict | None, mode: str, ms: float) -> Verdict:
        emotion, intent, harm = (table[code] for (_, table), code in zip(CODES.fields, read.codes, strict=True))
        confidence = round(self._confidence(read), 4)
        evidence = [
            f"mode={mode}",
            *(f"p({name})={read.probability(i):.3f}" for i, (name, _) in enumerate(CODES.fields)),
        ]
        if self.calibration is not None:
            evidence.append(
                f"calibrated T={self.calibration.temperature:g}: p(harm_type) "
                f"{read.probability(2):.3f} -> {confidence:.3f}"
            )
        explanation = (
            f"模型判读：情绪「{label_zh(emotion)}」，意图「{label_zh(intent)}」，"
            f"危害类型「{label_zh(harm)}」，概率 {confidence:.2f}"
            f"（{'降级模式' if mode == DEGRADED else '常规模式'}）。"
        )
        # the embedded tier's novelty flag asked for a reader that knows more: the model has now read the item
        carried = [s for s in (prior.signals if prior else []) if s.source != "novelty"]
        signals = [
            *carried,
            Signal(
                source="vlm",
                decided=["emotion", "intent", "harm_type", "confidence"],
                backs=["harm_type"],
                evidence=evidence,
                weight=confidence,
                latency_ms=round(ms, 2),
            ),
        ]
        return Verdict(
            emotion=emotion,
            intent=intent,
            harm_type=harm,
            confidence=confidence,
            explanation=explanation,
            ocr_text=prior.ocr_text if prior else "",
            signals=signals,
            analyzer=self.name,
            analyzer_version=self.version,
        )

    def _explain(
        self,
        verdicts: list[Verdict],
        texts: list[str],
        images: list[Image.Image],
        reads: list[reading.LabelRead],
        budget: Budget,
        mode: str,
    ) -> list[Verdict]:
        wanted = [i for i, v in enumerate(verdicts) if self.explain_when(v)]
        if not wanted:
            return verdicts
        started = time.perf_counter()
        prompts = [reading.explanation_prompt(texts[i], reads[i]) for i in wanted]
        raw = reading.generate_explanations(
            self.loaded, prompts, [images[i] for i in wanted], budget.max_new_tokens, prefix=self.prefix
        )
        ms = (time.perf_counter() - started) * 1000 / len(wanted)
        VLM_ITEMS.labels(mode, "explain").inc(len(wanted))
        out = list(verdicts)
        for i, text in zip(wanted, raw, strict=True):
            out[i] = with_explanation(verdicts[i], text, ms)
        return out


def with_explanation(verdict: Verdict, raw: str, ms: float) -> Verdict:
    """The verdict with the model's own explanation, or flagged for review when it cannot be read."""
    try:
        parsed = reading.parse_explanation(raw)
    except reading.VlmOutputError as exc:
        flag = Signal(source="review_needed", evidence=[f"模型说明无法解析：{exc}"], latency_ms=round(ms, 2))
        return verdict.model_copy(
            update={
                "confidence": min(verdict.confidence, UNPARSED_CONFIDENCE),
                "signals": [*verdict.signals, flag],
                "explanation": verdict.explanation + "模型的说明无法解析，需人工复核。",
            }
        )
    detail = "；".join(f"{k}：{v}" for k, v in parsed.items() if k != "explanation")
    text = parsed.get("explanation", "") + (f"（{detail}）" if detail else "")
    note = Signal(source="vlm_explanation", evidence=[raw[:200]], latency_ms=round(ms, 2))
    return verdict.model_copy(
        update={"explanation": f"{verdict.explanation}{text}", "signals": [*verdict.signals, note]}
    )
