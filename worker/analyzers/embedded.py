"""The embedded CPU analyzer: Chinese OCR + the meme/slang knowledge base -> a verdict that cites its
evidence. It needs no torch and is the default deployment and the fast tier in front of the VLM."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from PIL import Image

from memeguard.schemas import Emotion, HarmType, Intent, Signal, Verdict, label_zh
from worker.analyzers.base import AnalysisInput, AnalysisResult
from worker.kb import KnowledgeBase, Match

E = TypeVar("E", bound=StrEnum)
SOFTENER_HARM_FACTOR = 0.6
NO_EVIDENCE_CONFIDENCE = 0.5
MAX_CONFIDENCE = 0.97

OcrFn = Callable[[Sequence[Image.Image]], str]


@dataclass(frozen=True)
class _Pick:
    value: StrEnum
    score: float
    support: tuple[Match, ...]


def _vote(matches: list[Match], field: str, default: E, factor: float = 1.0) -> _Pick:
    """Sum entry weights per label; the label with the largest sum wins (ties: first seen)."""
    scores: dict[StrEnum, float] = defaultdict(float)
    support: dict[StrEnum, list[Match]] = defaultdict(list)
    for match in matches:
        label = getattr(match.entry, field)
        if label is not None:
            scores[label] += match.entry.weight * factor
            support[label].append(match)
    if not scores:
        return _Pick(default, 0.0, ())
    best = max(scores, key=lambda label: scores[label])
    return _Pick(best, scores[best], tuple(support[best]))


def _noisy_or(matches: Sequence[Match], factor: float) -> float:
    """Independent evidence combined: 1 - prod(1 - w). Two weak hits beat one."""
    remaining = 1.0
    for match in matches:
        remaining *= 1.0 - match.entry.weight * factor
    return min(MAX_CONFIDENCE, 1.0 - remaining)


class EmbeddedAnalyzer:
    name = "embedded"
    needs_pixels = True

    def __init__(self, kb: KnowledgeBase, ocr: OcrFn) -> None:
        self.kb, self._ocr = kb, ocr
        self.version = f"1+kb{kb.version}"

    @classmethod
    def default(cls) -> EmbeddedAnalyzer:
        from worker.ocr import ChineseOcr

        return cls(KnowledgeBase.bundled(), ChineseOcr().read)

    def analyze(self, item: AnalysisInput) -> AnalysisResult:
        started = time.perf_counter()
        ocr_text = self._ocr(item.frames)
        ocr_ms = (time.perf_counter() - started) * 1000
        kb_started = time.perf_counter()
        matches = self.kb.match(f"{ocr_text}\n{item.post_text}")
        verdict = self._verdict(ocr_text, matches, ocr_ms)
        kb_ms = (time.perf_counter() - kb_started) * 1000
        return AnalysisResult(verdict, {"ocr_ms": ocr_ms, "kb_ms": kb_ms})

    def _verdict(self, ocr_text: str, matches: list[Match], ocr_ms: float) -> Verdict:
        softened = any(m.entry.softener for m in matches)
        factor = SOFTENER_HARM_FACTOR if softened else 1.0
        harm = _vote(matches, "harm", HarmType.NONE, factor)
        intent = _vote(matches, "intent", Intent.NEUTRAL)
        emotion = _vote(matches, "emotion", Emotion.NEUTRAL)
        if softened and intent.value is Intent.EXPLICIT_ATTACK:
            intent = _Pick(Intent.SARCASM, intent.score, intent.support)
        confidence = self._confidence(harm, matches, factor)
        return Verdict(
            emotion=Emotion(emotion.value), intent=Intent(intent.value), harm_type=HarmType(harm.value),
            confidence=round(confidence, 4), ocr_text=ocr_text,
            explanation=_explain(ocr_text, matches, softened, emotion, intent, harm, confidence),
            signals=_signals(ocr_text, ocr_ms, matches, emotion, intent, harm),
            analyzer=self.name, analyzer_version=self.version,
        )

    @staticmethod
    def _confidence(harm: _Pick, matches: list[Match], factor: float) -> float:
        """Confidence in the harm decision, the field policies threshold on."""
        if harm.value is not HarmType.NONE:
            return _noisy_or(harm.support, factor)
        harmful = [m for m in matches if m.entry.harm is not None]
        benign = [m for m in matches if m.entry.harm is None and not m.entry.softener]
        if harmful:
            return 1.0 - _noisy_or(harmful, factor)
        return max(NO_EVIDENCE_CONFIDENCE, _noisy_or(benign, 1.0)) if benign else NO_EVIDENCE_CONFIDENCE


def _signals(ocr_text: str, ocr_ms: float, matches: list[Match], *picks: _Pick) -> list[Signal]:
    fields = ("emotion", "intent", "harm_type")
    kb_fields = [f for f, p in zip(fields, picks, strict=True) if p.support]
    default_fields = [f for f, p in zip(fields, picks, strict=True) if not p.support]
    signals = [Signal(source="ocr", evidence=[ocr_text[:200]] if ocr_text else [], latency_ms=round(ocr_ms, 2))]
    if matches:
        evidence = [f"{m.entry.id}:{m.text}" for m in matches]
        signals.append(Signal(source="kb", decided=kb_fields, evidence=evidence,
                              weight=round(max(m.entry.weight for m in matches), 3)))
    if default_fields:
        signals.append(Signal(source="embedded", decided=default_fields, evidence=["no knowledge-base evidence"]))
    return signals


def _explain(ocr_text: str, matches: list[Match], softened: bool, emotion: _Pick, intent: _Pick,
             harm: _Pick, confidence: float) -> str:
    """A Chinese explanation that cites the text read and every knowledge-base entry that matched."""
    parts = [f"图中文字：「{_clip(ocr_text)}」。" if ocr_text else "图中未识别到文字。"]
    if matches:
        cited = "；".join(f"「{m.text}」（{m.entry.note}）" for m in matches)
        parts.append(f"命中知识库：{cited}。")
    else:
        parts.append("未命中已知梗或敏感用语，证据不足，按中性处理。")
    if softened:
        parts.append("含狗头/保命等玩笑标记，攻击性按玩笑弱化。")
    parts.append(
        f"综合判断：情绪「{label_zh(emotion.value)}」，意图「{label_zh(intent.value)}」，"
        f"危害类型「{label_zh(harm.value)}」，置信度 {confidence:.2f}。")
    return "".join(parts)


def _clip(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"
