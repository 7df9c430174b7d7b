"""The verdict contract every analyzer fills, and the enums shared by all components.

Enums are ``StrEnum`` so they serialise by value everywhere (JSON, YAML policies, database columns).
Each carries a Chinese display label because reviewers and explanations are Chinese.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Emotion(StrEnum):
    JOY = "joy"
    AMUSEMENT = "amusement"
    EXCITEMENT = "excitement"
    SADNESS = "sadness"
    DISAPPOINTMENT = "disappointment"
    ANGER = "anger"
    DISGUST = "disgust"
    SURPRISE = "surprise"
    DISBELIEF = "disbelief"
    FEAR = "fear"
    EMBARRASSMENT = "embarrassment"
    CONTEMPT = "contempt"
    NEUTRAL = "neutral"


class Intent(StrEnum):
    HUMOR = "humor"
    SARCASM = "sarcasm"
    IMPLICIT_ATTACK = "implicit_attack"
    EXPLICIT_ATTACK = "explicit_attack"
    PROVOCATION = "provocation"
    COMPLAINT = "complaint"
    VENTING = "venting"
    PRAISE = "praise"
    HIGHLIGHT = "highlight"
    GREETING = "greeting"
    NEUTRAL = "neutral"
    COUNTER_SPEECH = "counter_speech"  # reports, quotes or argues against discrimination (not an attack)


class HarmType(StrEnum):
    """Aligned with the ToxiCN MM harm taxonomy."""

    NONE = "none"
    TARGETED_HARM = "targeted_harm"
    SEXUAL_INNUENDO = "sexual_innuendo"
    GENERAL_OFFENSE = "general_offense"
    DISPIRITED_CULTURE = "dispirited_culture"


# How urgent a harm type is for review: queues put the most severe first.
HARM_SEVERITY = {
    HarmType.TARGETED_HARM: 4,
    HarmType.SEXUAL_INNUENDO: 3,
    HarmType.GENERAL_OFFENSE: 2,
    HarmType.DISPIRITED_CULTURE: 1,
    HarmType.NONE: 0,
}


class ModerationAction(StrEnum):
    ALLOW = "allow"
    THROTTLE = "throttle"
    TAG = "tag"
    BLOCK = "block"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.REJECTED)


LABELS_ZH: dict[StrEnum, str] = {
    Emotion.JOY: "喜悦",
    Emotion.AMUSEMENT: "好笑",
    Emotion.EXCITEMENT: "兴奋",
    Emotion.SADNESS: "悲伤",
    Emotion.DISAPPOINTMENT: "失望",
    Emotion.ANGER: "愤怒",
    Emotion.DISGUST: "厌恶",
    Emotion.SURPRISE: "惊讶",
    Emotion.DISBELIEF: "难以置信",
    Emotion.FEAR: "恐惧",
    Emotion.EMBARRASSMENT: "尴尬",
    Emotion.CONTEMPT: "轻蔑",
    Emotion.NEUTRAL: "中性",
    Intent.HUMOR: "幽默",
    Intent.SARCASM: "讽刺/阴阳怪气",
    Intent.IMPLICIT_ATTACK: "隐性攻击",
    Intent.EXPLICIT_ATTACK: "显性攻击",
    Intent.PROVOCATION: "挑衅",
    Intent.COMPLAINT: "抱怨/投诉",
    Intent.VENTING: "宣泄",
    Intent.PRAISE: "称赞",
    Intent.HIGHLIGHT: "高能预警/亮点",
    Intent.GREETING: "问候",
    Intent.NEUTRAL: "中性",
    Intent.COUNTER_SPEECH: "反歧视/转述",
    HarmType.NONE: "无害",
    HarmType.TARGETED_HARM: "针对性伤害",
    HarmType.SEXUAL_INNUENDO: "性暗示",
    HarmType.GENERAL_OFFENSE: "一般冒犯",
    HarmType.DISPIRITED_CULTURE: "丧文化",
    ModerationAction.ALLOW: "放行",
    ModerationAction.THROTTLE: "限流",
    ModerationAction.TAG: "打标",
    ModerationAction.BLOCK: "拦截",
    JobStatus.QUEUED: "排队中",
    JobStatus.RUNNING: "处理中",
    JobStatus.DONE: "已完成",
    JobStatus.FAILED: "失败",
    JobStatus.REJECTED: "已拒收",
}


def label_zh(value: StrEnum) -> str:
    """Chinese display label of any memeguard enum member."""
    return LABELS_ZH[value]


class Signal(BaseModel):
    """One source's contribution: which verdict fields it decided and on what evidence."""

    model_config = ConfigDict(frozen=True)

    source: str = Field(description="fingerprint, ocr, kb, classifier, novelty, embedded, vlm, noop …")
    decided: list[str] = Field(default_factory=list, description="verdict fields this source decided")
    backs: list[str] = Field(
        default_factory=list,
        description="verdict fields this source's own evidence "
        "corroborates (a knowledge-base entry read as an attack, a known-harmful bank match, "
        "the VLM's reading): what the default policy needs before it blocks",
    )
    evidence: list[str] = Field(default_factory=list)
    weight: float = 0.0
    latency_ms: float | None = None


class Verdict(BaseModel):
    """A structured reading of one meme. Every analyzer must fill every field."""

    model_config = ConfigDict(frozen=True)

    emotion: Emotion
    intent: Intent
    harm_type: HarmType
    confidence: float = Field(ge=0.0, le=1.0)
    # each field's own calibrated confidence where the analyzer states one (None: not stated separately)
    emotion_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    intent_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    explanation: str = Field(description="in Chinese, citing what matched")
    ocr_text: str = ""
    signals: list[Signal] = Field(default_factory=list)
    analyzer: str
    analyzer_version: str
    latency_ms: float = Field(ge=0.0, default=0.0)

    def display(self) -> dict[str, Any]:
        """The verdict with Chinese labels added, for people."""
        return {
            **self.model_dump(mode="json"),
            "emotion_zh": label_zh(self.emotion),
            "intent_zh": label_zh(self.intent),
            "harm_type_zh": label_zh(self.harm_type),
        }


@dataclass(frozen=True)
class Decision:
    """What the policy decided and why; the worker stores it verbatim as the item's action. A core value:
    ``policies/`` returns it and the store keeps it, and neither imports the other for it."""

    action: ModerationAction
    policy_name: str
    policy_version: str
    rule_id: str
    reason: str


TRIAL_TENANT = "memeguard-trial"  # the console's "try it" page: never a platform's, never in queues or training


class Rejected(Exception):
    """A refused input with a stable ``code`` (clients branch on it) and a ``message`` saying why in words;
    the upload path's refusals are these (``producer.validation.UploadRejected`` adds the HTTP status)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message
