"""The embedded CPU analyzer: Chinese OCR + the meme/slang knowledge base -> a verdict that cites its
evidence. It needs no torch and is the default deployment and the fast tier in front of the VLM."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from PIL import Image

from memeguard.schemas import Emotion, HarmType, Intent, Signal, Verdict, label_zh
from worker.analyzers.base import AnalysisInput, AnalysisResult
from worker.feeling import FAMILIES, EmotionCall, Feeling, settle_emotion, strongest_cue
from worker.knowledge import ATTACK_HARMS, KnowledgeBase, Match, joined
from worker.match_reading import mentioned_groups, read

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from memeguard.settings import Settings
    from worker.classifier import HarmClassifier, Reading
    from worker.overlay import Overlay

E = TypeVar("E", bound=StrEnum)
SOFTENER_HARM_FACTOR = 0.6
NO_EVIDENCE_CONFIDENCE = 0.5
MAX_CONFIDENCE = 0.97

OcrFn = Callable[[Sequence[Image.Image]], str]
OcrManyFn = Callable[[Sequence[Sequence[Image.Image]]], list[str]]


@dataclass(frozen=True)
class _Pick:
    value: StrEnum
    score: float
    support: tuple[Match, ...]
    source: str = ""  # what decided it when not the knowledge base's entries: model, emotion, classifier

    @property
    def decider(self) -> str:
        return self.source or ("kb" if self.support else "embedded")


def _vote(matches: list[Match], field: str, default: E, factor: float = 1.0) -> _Pick:
    """Sum entry weights per label; the label with the largest sum wins (ties: first seen)."""
    scores: dict[StrEnum, float] = defaultdict(float)
    support: dict[StrEnum, list[Match]] = defaultdict(list)
    for match in matches:
        label = getattr(match.entry, field)
        if label is not None:
            scores[label] += match.weight * factor
            support[label].append(match)
    if not scores:
        return _Pick(default, 0.0, ())
    best = max(scores, key=lambda label: scores[label])
    return _Pick(best, scores[best], tuple(support[best]))


def _noisy_or(matches: Sequence[Match], factor: float) -> float:
    """Independent evidence combined: 1 - prod(1 - w). Two weak hits beat one."""
    remaining = 1.0
    for match in matches:
        remaining *= 1.0 - min(1.0, match.weight * factor)
    return min(MAX_CONFIDENCE, 1.0 - remaining)


CUSTOMER_SERVICE_SCENES = {"customer_service", "客服"}
SELF_WORDS = ("我", "俺", "本人", "老子自己")
OTHER_WORDS = ("你", "您", "他", "她", "它", "你们", "他们", "她们", "楼主", "博主", "这人", "这些人")
ATTACKS = (Intent.EXPLICIT_ATTACK, Intent.IMPLICIT_ATTACK)


def _templates(context: dict[str, Any]) -> str:
    """The matched templates' names (狗头, 熊猫头), which read as cues beside the text."""
    return " ".join(str(t) for t in context.get("templates", []))


def is_self_directed(text: str) -> bool:
    """First person and no one else named: an insult aimed at oneself (我就是个废物) is self-deprecation."""
    return any(w in text for w in SELF_WORDS) and not any(w in text for w in OTHER_WORDS)


class EmbeddedAnalyzer:
    """OCR -> knowledge base (+ the learned classifier when one is configured) -> verdict."""

    name = "embedded"
    needs_pixels = True

    def __init__(
        self,
        kb: KnowledgeBase,
        ocr: OcrFn,
        classifier: HarmClassifier | None = None,
        overlay: Overlay | None = None,
        ocr_many: OcrManyFn | None = None,
    ) -> None:
        """``ocr`` reads one meme's frames; ``ocr_many``, when given, reads a batch's memes in one pass (the
        OCR reader's ``read_many``), else the batch is read meme by meme."""
        self._base, self._ocr, self.classifier = kb.warm(), ocr, classifier.warm() if classifier else None
        self._ocr_many: OcrManyFn = ocr_many or (lambda items: [ocr(frames) for frames in items])
        self.overlay = overlay

    def with_classifier(self, classifier: HarmClassifier | None) -> EmbeddedAnalyzer:
        """This analyzer with another classifier (a release candidate): the same knowledge base, overlay and
        OCR."""
        return EmbeddedAnalyzer(self._base, self._ocr, classifier, self.overlay, self._ocr_many)

    @property
    def kb(self) -> KnowledgeBase:
        """The knowledge base the next item is read with: the overlay's current one when this analyzer
        follows the overlay (refreshed when stale), else the one it was built with."""
        return self.overlay.current() if self.overlay is not None else self._base

    @property
    def version(self) -> str:
        return self._version_of(self.kb)

    def _version_of(self, kb: KnowledgeBase) -> str:
        learned = f"+{self.classifier.version}" if self.classifier else ""
        return f"2+kb{kb.version}{learned}"

    @classmethod
    def default(
        cls, settings: Settings | None = None, sessions: sessionmaker[Session] | None = None
    ) -> EmbeddedAnalyzer:
        """The bundled knowledge base and, when settings have one, the classifier (MEMEGUARD_CLASSIFIER_PATH,
        else the shipped ``data_dir/models/current.joblib``) with the external knowledge bases it was trained
        with (or MEMEGUARD_KB_EXTERNAL, which must then be the same). Given the database's ``sessions`` (a
        worker) and unless MEMEGUARD_KB_OVERLAY is off, it follows the approved overlay."""
        from worker.ocr import ChineseOcr

        classifier, externals = None, list(settings.kb_external) if settings else []
        path = settings.effective_classifier_path if settings else None
        if settings is not None and path is not None:
            from worker.classifier import HarmClassifier

            classifier = HarmClassifier.load(path)
            externals = externals if settings.kb_external_given else classifier.kb_external
            if missing := [str(p) for p in externals if not p.exists()]:
                raise FileNotFoundError(
                    f"classifier {classifier.version} reads the knowledge bases {missing}, which "
                    "are not there: set MEMEGUARD_KB_EXTERNAL to where they are now, or retrain"
                )
        kb = KnowledgeBase.bundled()
        for external in externals:
            kb = kb.merged(KnowledgeBase.load_any(external))
        if classifier is not None:
            classifier.check_kb(kb)
        overlay = None
        if settings is not None and sessions is not None and settings.kb_overlay:
            from worker.overlay import Overlay

            overlay = Overlay(kb.warm(), sessions, settings.kb_refresh_s)
        reader = (
            ChineseOcr(settings.ocr_threads, settings.ocr_rec_batch, settings.ocr_recogniser)
            if settings
            else ChineseOcr()
        )
        return cls(kb, reader.read, classifier, overlay, reader.read_many)

    def analyze(self, item: AnalysisInput) -> AnalysisResult:
        return self.analyze_batch([item])[0]

    def analyze_batch(self, items: list[AnalysisInput]) -> list[AnalysisResult]:
        """A worker batch in two passes instead of one per meme: the OCR of every meme not yet read (the text
        lines of all of them recognised together) and the classifier over every text (one sentence-encoder
        call). Each verdict is the one ``analyze`` gives the item alone; ``ocr_ms`` is the batch's OCR time
        shared equally by the memes it read."""
        unread = [item.frames for item in items if item.ocr_text is None]
        started = time.perf_counter()
        read = iter(self._ocr_many(unread) if unread else [])
        ocr_ms = (time.perf_counter() - started) * 1000 / max(1, len(unread))
        return self.read_texts(
            [
                (next(read), item.post_text, item.context, ocr_ms)
                if item.ocr_text is None
                else (item.ocr_text, item.post_text, item.context, 0.0)
                for item in items
            ]
        )

    def read_image_text(self, frames: Sequence[Image.Image]) -> str:
        """The OCR this analyzer uses (the fingerprint stage reads text once and passes it on)."""
        return self._ocr(frames)

    def read_text(
        self, ocr_text: str, post_text: str = "", context: dict[str, Any] | None = None, ocr_ms: float = 0.0
    ) -> AnalysisResult:
        """Everything after OCR (the evaluation harness's ``--no-render`` mode starts here)."""
        return self.read_texts([(ocr_text, post_text, context or {}, ocr_ms)])[0]

    def read_texts(self, items: Sequence[tuple[str, str, dict[str, Any], float]]) -> list[AnalysisResult]:
        """``read_text`` for (OCR text, post text, context, OCR ms) tuples, the classifier run once over all.
        ``kb_ms`` is the time after OCR shared equally by the items."""
        started = time.perf_counter()
        kb = self.kb  # one knowledge base for the whole batch, even if the overlay moves meanwhile
        texts = [joined(ocr, post, _templates(context)) for ocr, post, context, _ in items]
        matches = [read(kb.match(text), text) for text in texts]
        learned = self._learned(kb, [(ocr, post) for ocr, post, _, _ in items], matches)
        verdicts = [
            self._verdict(
                ocr,
                post,
                found,
                ocr_ms,
                reading,
                {**context, "_self": is_self_directed(text), "_version": self._version_of(kb)},
            )
            for (ocr, post, context, ocr_ms), text, found, reading in zip(items, texts, matches, learned, strict=True)
        ]
        kb_ms = (time.perf_counter() - started) * 1000 / max(1, len(items))
        return [
            AnalysisResult(verdict, {"ocr_ms": ocr_ms, "kb_ms": kb_ms})
            for verdict, (_, _, _, ocr_ms) in zip(verdicts, items, strict=True)
        ]

    def _learned(
        self, kb: KnowledgeBase, texts: list[tuple[str, str]], matches: list[list[Match]]
    ) -> list[Reading | None]:
        if self.classifier is None or not texts:
            return [None] * len(texts)
        return list(self.classifier.predict([t for t, _ in texts], kb, matches, [p for _, p in texts]))

    def _verdict(
        self,
        ocr_text: str,
        post_text: str,
        matches: list[Match],
        ocr_ms: float,
        learned: Reading | None,
        context: dict[str, Any],
    ) -> Verdict:
        softened = any(m.entry.softener for m in matches)
        factor = SOFTENER_HARM_FACTOR if softened else 1.0
        # topic words never decide a harm type alone, nor does what the sentence denies or argues against
        evidence = [m for m in matches if m.entry.evidence and not m.denied]
        harm = _vote(evidence, "harm", HarmType.NONE, factor)
        intent = _scene_intent(_vote(matches, "intent", Intent.NEUTRAL), context)
        cue, cue_weight, cue_support = strongest_cue(matches)
        emotion = _Pick(cue or Emotion.NEUTRAL, cue_weight, cue_support)
        if softened and intent.value is Intent.EXPLICIT_ATTACK:
            intent = _Pick(Intent.SARCASM, intent.score, intent.support)
        self_directed = bool(context.get("_self")) and intent.value in ATTACKS
        if self_directed:
            factor *= SOFTENER_HARM_FACTOR
            harm = _vote(evidence, "harm", HarmType.NONE, factor)
            intent, emotion = _Pick(Intent.VENTING, intent.score, intent.support), _self_emotion(emotion)
        confidence = self._confidence(harm, matches, factor)
        if learned is not None:
            harm, confidence = _Pick(learned.harm, learned.confidence, (), "classifier"), learned.confidence
            intent = _counter_intent(intent, learned, matches)
        elif harm.value is not HarmType.NONE and intent.value is Intent.COUNTER_SPEECH:
            intent = _intent_beside_counter_speech(matches)
        felt = settle_emotion(
            Emotion(emotion.value) if emotion.support else None, emotion.score, learned.feeling if learned else None
        )
        emotion = _Pick(
            felt.emotion, felt.confidence or 0.0, emotion.support if felt.source != "model" else (), felt.source
        )
        intent = _scene_intent(_learned_intent(intent, HarmType(harm.value), felt, learned), context)
        # the knowledge base backs the harm type when it read an attack the sentence did not soften or turn
        backed = (
            HarmType(harm.value) in ATTACK_HARMS
            and not (softened or self_directed)
            and any(m.attacking for m in matches)
        )
        explanation = _explain(
            ocr_text, matches, softened, emotion, intent, harm, confidence, learned.feeling if learned else None
        )
        if self_directed:
            explanation += "用语指向自己（第一人称、未指向他人），按自嘲处理，攻击性弱化。"
        explanation += _group_reading(joined(ocr_text, post_text), harm, intent, matches, learned)
        return Verdict(
            emotion=Emotion(emotion.value),
            intent=Intent(intent.value),
            harm_type=HarmType(harm.value),
            confidence=round(confidence, 4),
            emotion_confidence=felt.confidence,
            intent_confidence=_intent_confidence(intent),
            ocr_text=ocr_text,
            explanation=explanation + _advice(intent, context, learned),
            signals=_signals(ocr_text, ocr_ms, matches, learned, backed, emotion, intent, harm),
            analyzer=self.name,
            analyzer_version=str(context["_version"]),
        )

    @staticmethod
    def _confidence(harm: _Pick, matches: list[Match], factor: float) -> float:
        """Confidence in the harm decision, the field policies threshold on."""
        if harm.value is not HarmType.NONE:
            return _noisy_or(harm.support, factor)
        harmful = [m for m in matches if m.entry.harm is not None and m.entry.evidence and not m.denied]
        benign = [m for m in matches if m.entry.harm is None and not m.entry.softener]
        if harmful:
            return 1.0 - _noisy_or(harmful, factor)
        return max(NO_EVIDENCE_CONFIDENCE, _noisy_or(benign, 1.0)) if benign else NO_EVIDENCE_CONFIDENCE


# a harmless text's intent from the family of its emotion (when no cue names one): a laughing meme jokes, a
# mourning one vents, an angry or disgusted one complains
INTENT_OF_FAMILY = {
    "positive": Intent.HUMOR,
    "low": Intent.VENTING,
    "fear": Intent.VENTING,
    "hostile": Intent.COMPLAINT,
}


def _learned_intent(intent: _Pick, harm: HarmType, felt: EmotionCall, learned: Reading | None) -> _Pick:
    """Where no knowledge-base cue (nor the counter-speech reading) names the intent: a harmful text's attack
    style from the attack-style reader (explicit or implicit), a harmless one's from its emotion. An entry
    whose intent is neutral (开心 names a feeling, not a purpose) leaves the intent open."""
    if intent.value is not Intent.NEUTRAL:
        return intent
    if harm is not HarmType.NONE and learned is not None and learned.style is not None:
        return _Pick(learned.style.intent, learned.style.confidence, (), "attack_style")
    family = FAMILIES.get(felt.emotion)
    if harm is HarmType.NONE and family in INTENT_OF_FAMILY and felt.confidence is not None:
        return _Pick(INTENT_OF_FAMILY[family], felt.confidence, (), "emotion")
    return intent


def _intent_confidence(intent: _Pick) -> float | None:
    """The intent's own confidence: the deciding model's probability, the knowledge base's cue strength, or
    none stated (a neutral intent nothing decided)."""
    if intent.source:
        return round(intent.score, 4)
    if intent.support:  # summed cue weights: never certainty
        return round(min(intent.score, MAX_CONFIDENCE), 4)
    return None


def _counter_intent(intent: _Pick, learned: Reading, matches: list[Match]) -> _Pick:
    """The classifier's reading settles counter-speech: a harmless text it reads as counter-speech is
    counter-speech; a text it reads as harmful is not, whatever cue words it contains."""
    if learned.counter_speech:
        return _Pick(Intent.COUNTER_SPEECH, learned.confidence, intent.support, "classifier")
    if learned.harm is not HarmType.NONE and intent.value is Intent.COUNTER_SPEECH:
        return _intent_beside_counter_speech(matches)
    return intent


def _intent_beside_counter_speech(matches: list[Match]) -> _Pick:
    """A harmful text is not counter-speech whatever cue words it holds: the intent its other entries give."""
    return _vote([m for m in matches if m.entry.intent is not Intent.COUNTER_SPEECH], "intent", Intent.NEUTRAL)


def _group_reading(text: str, harm: _Pick, intent: _Pick, matches: list[Match], learned: Reading | None) -> str:
    """Why a text that names a group of people was not read as an attack on it (or, when it was, nothing:
    the rest of the explanation says why)."""
    groups = mentioned_groups(text)
    if not groups or harm.value is not HarmType.NONE:
        return ""
    named = "、".join(f"「{g}」" for g in groups[:3])
    cues = [m.text for m in matches if m.entry.intent is Intent.COUNTER_SPEECH]
    if intent.value is Intent.COUNTER_SPEECH:
        why = f"在反驳或转述歧视（「{cues[0]}」）" if cues else "在反驳或转述歧视（分类器判断为反歧视言论）"
        return f"文本提到群体{named}，但{why}，按反歧视言论处理，不视为攻击。"
    if learned is not None:
        return f"文本提到群体{named}，但未见针对该群体的贬损，分类器判断无害（概率 {learned.confidence:.2f}）。"
    return f"文本提到群体{named}，但未命中针对该群体的贬损用语。"


def _self_emotion(emotion: _Pick) -> _Pick:
    if emotion.value in (Emotion.CONTEMPT, Emotion.ANGER, Emotion.NEUTRAL):
        return _Pick(Emotion.SADNESS, emotion.score, emotion.support)
    return emotion


def _scene_intent(intent: _Pick, context: dict[str, Any]) -> _Pick:
    """In a customer-service chat, an upset meme is a complaint about the service, not idle venting."""
    upset = intent.value in (Intent.VENTING, Intent.COMPLAINT, Intent.NEUTRAL)
    if str(context.get("scene", "")) in CUSTOMER_SERVICE_SCENES and upset:
        return _Pick(Intent.COMPLAINT, intent.score, intent.support, intent.source)
    return intent


def _advice(intent: _Pick, context: dict[str, Any], learned: Reading | None) -> str:
    parts = []
    if str(context.get("scene", "")) in CUSTOMER_SERVICE_SCENES and intent.value is Intent.COMPLAINT:
        parts.append("场景为客服对话，用户情绪低落并在投诉，建议转人工客服跟进。")
    if learned is not None:
        parts.append(f"文本分类器判断危害类型「{label_zh(learned.harm)}」（概率 {learned.confidence:.2f}）。")
    if learned is not None and learned.novel:
        parts.append(f"该文本与训练数据差异较大（最近相似度 {learned.similarity:.2f}），置信度已下调，建议人工复核。")
    return "".join(parts)


DECIDERS = {
    "kb": ("kb",),
    "kb+model": ("kb", "emotion_model"),
    "model": ("emotion_model",),
    "emotion": ("emotion_model",),
    "attack_style": ("attack_style",),
    "classifier": ("classifier",),
    "none": ("embedded",),
    "embedded": ("embedded",),
}


def _signals(
    ocr_text: str, ocr_ms: float, matches: list[Match], learned: Reading | None, backed: bool, *picks: _Pick
) -> list[Signal]:
    """One signal per source, each listing the verdict fields it decided."""
    decided: dict[str, list[str]] = defaultdict(list)
    for name, pick in zip(("emotion", "intent", "harm_type"), picks, strict=True):
        for source in DECIDERS[pick.decider]:
            decided[source].append(name)
    signals = [Signal(source="ocr", evidence=[ocr_text[:200]] if ocr_text else [], latency_ms=round(ocr_ms, 2))]
    if learned is not None:
        signals.append(_classifier_signal(learned, decided["classifier"]))
    if learned is not None and learned.novel:
        signals.append(
            Signal(
                source="novelty",
                evidence=[f"nearest training text cosine {learned.similarity:.3f} is below the novelty threshold"],
            )
        )
    if learned is not None and learned.feeling is not None:
        f = learned.feeling
        signals.append(
            Signal(
                source="emotion_model",
                decided=decided["emotion_model"],
                weight=round(f.confidence, 3),
                evidence=[
                    f"{f.likeliest.value} p={f.confidence:.3f}",
                    f"label {f.native}",
                    f"threshold {f.threshold:.2f}",
                ],
            )
        )
    if learned is not None and learned.style is not None and decided["attack_style"]:
        signals.append(
            Signal(
                source="attack_style",
                decided=decided["attack_style"],
                weight=round(learned.style.confidence, 3),
                evidence=[f"{learned.style.intent.value} p={learned.style.confidence:.3f}"],
            )
        )
    if matches:
        evidence = [f"{m.entry.id}:{m.text}" + (f" ({m.how})" if m.how != "exact" else "") for m in matches]
        signals.append(
            Signal(
                source="kb",
                decided=decided["kb"],
                backs=["harm_type"] if backed else [],
                evidence=evidence,
                weight=round(max(m.weight for m in matches), 3),
            )
        )
    if decided["embedded"]:
        signals.append(Signal(source="embedded", decided=decided["embedded"], evidence=["no evidence either way"]))
    return signals


def _classifier_signal(learned: Reading, fields: list[str]) -> Signal:
    decided = [*fields, "confidence"]
    evidence = [f"{learned.harm.value} p={learned.confidence:.3f}", f"harmful share {learned.harmful_share:.3f}"]
    if learned.counter_speech:
        evidence.append("counter_speech")
    if learned.similarity is not None:
        evidence.append(f"nearest training text cosine {learned.similarity:.3f}")
    return Signal(source="classifier", decided=decided, evidence=evidence, weight=round(learned.confidence, 3))


def _explain(
    ocr_text: str,
    matches: list[Match],
    softened: bool,
    emotion: _Pick,
    intent: _Pick,
    harm: _Pick,
    confidence: float,
    feeling: Feeling | None = None,
) -> str:
    """A Chinese explanation that cites the text read and every knowledge-base entry that matched, and states
    the emotion and the intent each with the evidence for it."""
    parts = [f"图中文字：「{_clip(ocr_text)}」。" if ocr_text else "图中未识别到文字。"]
    if matches:
        cited = "；".join(_cite(m) for m in matches)
        parts.append(f"命中知识库：{cited}。")
    else:
        parts.append("未命中已知梗或敏感用语。" if feeling else "未命中已知梗或敏感用语，证据不足，按中性处理。")
    if softened:
        parts.append("含狗头/保命等玩笑标记，攻击性按玩笑弱化。")
    parts.append(
        f"综合判断：情绪「{label_zh(emotion.value)}」（{_emotion_because(emotion, feeling)}），"
        f"意图「{label_zh(intent.value)}」（{_intent_because(intent)}），"
        f"危害类型「{label_zh(harm.value)}」，置信度 {confidence:.2f}。"
    )
    return "".join(parts)


def _cues(pick: _Pick) -> str:
    return "、".join(f"「{m.text}」" for m in pick.support[:3])


def _emotion_because(emotion: _Pick, feeling: Feeling | None) -> str:
    if emotion.decider == "model":
        return f"情绪模型判断，概率 {emotion.score:.2f}"
    if emotion.decider == "kb+model":
        return f"依据知识库{_cues(emotion)}，情绪模型同向，置信度 {emotion.score:.2f}"
    if emotion.decider == "kb":
        leaning = f"，情绪模型倾向「{label_zh(feeling.likeliest)}」" if feeling else ""
        return f"依据知识库{_cues(emotion)}{leaning}"
    if feeling is not None:
        return (
            f"情绪模型最可能为「{label_zh(feeling.likeliest)}」，但概率 {feeling.confidence:.2f} 低于阈值 "
            f"{feeling.threshold:.2f}，不作判断"
        )
    return "未见情绪线索"


def _intent_because(intent: _Pick) -> str:
    if intent.decider == "attack_style":
        return f"攻击方式模型判断，概率 {intent.score:.2f}"
    if intent.decider == "emotion":
        return "无害内容，由情绪推断"
    if intent.decider == "classifier":
        return f"分类器判断为反歧视言论，概率 {intent.score:.2f}"
    if intent.support:
        return f"依据知识库{_cues(intent)}"
    return "未见意图线索"


HOW_ZH = {"homophone": "谐音", "initials": "拼音首字母"}


def _cite(match: Match) -> str:
    """「matched text」（meaning；how it matched；what the sentence did to it）."""
    notes = [_clip(match.entry.note, 40)]
    if match.how in HOW_ZH:
        notes.append(f"{HOW_ZH[match.how]}匹配")
    return f"「{match.text}」（{'；'.join([*notes, *match.why])}）"


def _clip(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"
