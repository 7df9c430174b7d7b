"""The signals of a verdict as a reviewer reads them: a Chinese sentence per piece of evidence, with the raw
text (entry ids, hashes, probabilities) kept for hover and for the details block.

Analyzers write evidence for engineers ("insult.shen-gou:死狗", "harassment p=0.873"); reviewers read
Chinese. Each rule below turns one evidence pattern into a sentence; evidence no rule knows is shown as it
is, so nothing is hidden.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from memeguard.schemas import LABELS_ZH, Signal

SOURCES = {
    "ocr": "图中文字识别",
    "kb": "知识库",
    "classifier": "文本分类器",
    "novelty": "新内容提示",
    "emotion_model": "情绪模型",
    "attack_style": "攻击风格",
    "embedded": "CPU 分析",
    "fingerprint": "指纹库",
    "cascade": "分级分析",
    "vlm": "视觉大模型",
    "vlm_explanation": "大模型说明",
    "review_needed": "需要人工复核",
    "noop": "空分析器",
}
FIELDS = {"emotion": "情绪", "intent": "意图", "harm_type": "危害类型", "confidence": "置信度"}
HOW = {"homophone": "谐音（拼音相同）"}


_BY_VALUE = {str(member.value): text for member, text in LABELS_ZH.items()}


def _label(value: str) -> str:
    """A schema label (harassment, sarcasm …) in Chinese, or the value itself."""
    return _BY_VALUE.get(value, value)


Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]
RULES: dict[str, list[Rule]] = {
    "kb": [
        (
            re.compile(r"^(?P<id>[\w.-]+):(?P<text>.+?)(?: \((?P<how>\w+)\))?$"),
            lambda m: (
                f"知识库词条「{m['text']}」" + (f"（{HOW.get(m['how'], m['how'])}写法）" if m["how"] else "") + "命中"
            ),
        )
    ],
    "classifier": [
        (re.compile(r"^(?P<label>\w+) p=(?P<p>[\d.]+)$"), lambda m: f"判为{_label(m['label'])}，概率 {m['p']}"),
        (re.compile(r"^harmful share (?P<p>[\d.]+)$"), lambda m: f"有害的可能性合计 {m['p']}"),
        (re.compile(r"^counter_speech$"), lambda m: "读作反驳歧视的言论（反向言论）"),
        (re.compile(r"^nearest training text cosine (?P<c>[\d.]+)$"), lambda m: f"与最相近的训练文本相似度 {m['c']}"),
    ],
    "novelty": [
        (
            re.compile(r"^nearest training text cosine (?P<c>[\d.]+) is below the novelty threshold$"),
            lambda m: f"与训练数据都不相近（相似度 {m['c']}），分类器的把握不可全信",
        )
    ],
    "emotion_model": [
        (re.compile(r"^(?P<label>\w+) p=(?P<p>[\d.]+)$"), lambda m: f"情绪读作{_label(m['label'])}，概率 {m['p']}"),
        (re.compile(r"^label (?P<native>.+)$"), lambda m: f"数据集原标签：{m['native']}"),
        (re.compile(r"^threshold (?P<t>[\d.]+)$"), lambda m: f"判定阈值 {m['t']}"),
    ],
    "attack_style": [
        (re.compile(r"^(?P<label>\w+) p=(?P<p>[\d.]+)$"), lambda m: f"表达方式像{_label(m['label'])}，概率 {m['p']}")
    ],
    "embedded": [(re.compile(r"^no evidence either way$"), lambda m: "正反两方面都没有证据，按默认判定")],
    "fingerprint": [
        (re.compile(r"^reused verdict of job (?P<job>\S+)$"), lambda m: "与已审内容相同，沿用其结论"),
        (re.compile(r"^(?P<sig>\w+) distance (?P<d>\d+)$"), lambda m: f"{m['sig'].upper()} 距离 {m['d']}"),
        (re.compile(r"^caption matches$"), lambda m: "文字也一致"),
        (
            re.compile(r"^bank (?P<bank>\S+) hash (?P<id>\d+) (?P<sig>\w+) d=(?P<d>\d+)$"),
            lambda m: f"命中指纹库「{m['bank']}」（{m['sig'].upper()} 距离 {m['d']}）",
        ),
        (
            re.compile(r"^template (?P<t>.+) \((?P<sig>\w+) d=(?P<d>\d+)\)$"),
            lambda m: f"模板「{m['t']}」（{m['sig'].upper()} 距离 {m['d']}）",
        ),
        (re.compile(r"^allow-list suppressed (?P<bank>\S+)$"), lambda m: f"白名单抵消了指纹库「{m['bank']}」的命中"),
        (
            re.compile(r"^image matches (?P<n>\d+) earlier job\(s\) with another caption: template only$"),
            lambda m: f"图片与 {m['n']} 条已审内容相同但文字不同：只作模板参考",
        ),
        (
            re.compile(r"^PDQ quality (?P<q>\d+) < (?P<min>\d+): not matched$"),
            lambda m: f"图片质量 {m['q']} 过低（低于 {m['min']}），不做指纹匹配",
        ),
        (re.compile(r"^no known meme$"), lambda m: "未命中已知梗图"),
    ],
}


@dataclass(frozen=True)
class Line:
    """One piece of evidence: the sentence a reviewer reads and the raw text behind it (hover, details)."""

    text: str
    raw: str


@dataclass(frozen=True)
class SignalView:
    source: str  # in Chinese
    decided: str  # the verdict fields it decided, in Chinese
    lines: list[Line]
    weight: float
    latency_ms: float | None
    raw_source: str


def describe(signal: Signal) -> SignalView:
    """A signal with its source, decided fields and evidence in Chinese."""
    return SignalView(
        source=SOURCES.get(signal.source, signal.source),
        decided="、".join(FIELDS.get(name, name) for name in signal.decided),
        lines=[Line(_sentence(signal.source, raw), raw) for raw in signal.evidence],
        weight=signal.weight,
        latency_ms=signal.latency_ms,
        raw_source=signal.source,
    )


def _sentence(source: str, raw: str) -> str:
    if source == "ocr":
        return f"识别到的文字：{raw}"
    for pattern, render in RULES.get(source, []):
        if match := pattern.match(raw):
            return render(match)
    return raw
