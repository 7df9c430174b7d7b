"""The embedded analyzer on memes rendered with a real CJK font and read by the real OCR."""

from __future__ import annotations

import subprocess
import sys

import pytest

from memeguard.imaging import decode_frames
from memeguard.schemas import Verdict
from policies import evaluate, load_policy
from worker.analyzers import AnalysisInput, build_analyzer
from worker.analyzers.embedded import EmbeddedAnalyzer
from worker.samples import render_meme


def analyze(analyzer: EmbeddedAnalyzer, caption: str, post_text: str = "", template: str = "plain"):  # type: ignore[no-untyped-def]
    frames = decode_frames(render_meme(caption, template), 4)
    return analyzer.analyze(AnalysisInput(frames, post_text)).verdict


@pytest.mark.parametrize(
    ("caption", "post_text", "template", "emotion", "intent", "harm"),
    [
        ("你说得对，但是这版本就是不行", "", "doge", "contempt", "sarcasm", "none"),
        ("前方高能预警", "", "panda", "excitement", "highlight", "none"),
        ("你认真的？", "", "question", "disbelief", "neutral", "none"),
        ("笑死我了", "狗头保命", "doge", "amusement", "humor", "none"),
        ("你个sb赶紧去死", "", "plain", "anger", "explicit_attack", "targeted_harm"),
        ("我直接躺平摆烂了", "", "crying_cat", "disappointment", "venting", "dispirited_culture"),
        ("早上好，今天也要开心", "", "plain", "joy", "greeting", "none"),
    ],
)
def test_reads_rendered_memes(
    embedded_analyzer: EmbeddedAnalyzer,
    caption: str,
    post_text: str,
    template: str,
    emotion: str,
    intent: str,
    harm: str,
) -> None:
    verdict = analyze(embedded_analyzer, caption, post_text, template)
    assert (verdict.emotion.value, verdict.intent.value, verdict.harm_type.value) == (emotion, intent, harm)
    assert verdict.ocr_text, "OCR read nothing"


def test_explanation_is_chinese_and_cites_what_matched(embedded_analyzer: EmbeddedAnalyzer) -> None:
    verdict = analyze(embedded_analyzer, "你说得对，但是我不听")
    assert "命中知识库" in verdict.explanation and "你说得对但是" in verdict.explanation
    assert "讽刺" in verdict.explanation
    sources = {s.source: s for s in verdict.signals}
    assert set(sources) >= {"ocr", "kb"}
    assert "intent" in sources["kb"].decided
    assert any(e.startswith("sarcasm.nishuodedui-danshi") for e in sources["kb"].evidence)


def test_softener_turns_an_attack_into_sarcasm_and_lowers_confidence(embedded_analyzer: EmbeddedAnalyzer) -> None:
    harsh = analyze(embedded_analyzer, "你就是个废物")
    softened = analyze(embedded_analyzer, "你就是个废物", post_text="手动狗头")
    assert harsh.intent.value == "explicit_attack"
    assert softened.intent.value == "sarcasm"
    assert softened.confidence < harsh.confidence
    assert "玩笑" in softened.explanation


def test_no_evidence_is_neutral_with_low_confidence(embedded_analyzer: EmbeddedAnalyzer) -> None:
    verdict = analyze(embedded_analyzer, "今天的天气")
    assert (verdict.intent.value, verdict.harm_type.value, verdict.confidence) == ("neutral", "none", 0.5)
    assert "证据不足" in verdict.explanation
    assert any(s.source == "embedded" for s in verdict.signals)


def test_post_text_is_read_as_well_as_the_image(embedded_analyzer: EmbeddedAnalyzer) -> None:
    verdict = analyze(embedded_analyzer, "今天的天气", post_text="nmsl")
    assert verdict.harm_type.value == "targeted_harm"


def test_unknown_analyzer_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown analyzer 'gpt'"):
        build_analyzer("gpt")


@pytest.mark.integration  # runs the command as a process of its own
def test_embedded_analyzer_runs_without_torch() -> None:
    code = (
        "import sys; from worker.samples import render_meme; from memeguard.imaging import decode_frames;"
        "from worker.analyzers import build_analyzer, AnalysisInput;"
        "v = build_analyzer('embedded').analyze(AnalysisInput(decode_frames(render_meme('笑死'), 1))).verdict;"
        "assert v.intent.value == 'humor', v; assert 'torch' not in sys.modules; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.parametrize(
    ("text", "self_directed"),
    [("我就是个废物", True), ("你就是个废物", False), ("我觉得他是废物", False), ("今天天气不错", False)],
)
def test_who_is_targeted(text: str, self_directed: bool) -> None:
    from worker.analyzers.embedded import is_self_directed

    assert is_self_directed(text) is self_directed


def test_self_deprecation_is_venting_not_an_attack(embedded_analyzer: EmbeddedAnalyzer) -> None:
    at_self = embedded_analyzer.read_text("我就是个废柴").verdict  # one entry matches either way
    at_you = embedded_analyzer.read_text("你就是个废柴").verdict
    assert at_you.intent.value == "explicit_attack"
    assert at_self.intent.value == "venting" and at_self.emotion.value == "sadness"
    assert at_self.confidence == pytest.approx(at_you.confidence * 0.6, abs=1e-3)  # same words, weaker harm
    assert "自嘲" in at_self.explanation
    policy = load_policy()
    assert (evaluate(policy, at_you).action.value, evaluate(policy, at_self).action.value) == ("tag", "throttle")


def test_counter_speech_that_names_a_group_is_not_read_as_an_attack(embedded_analyzer: EmbeddedAnalyzer) -> None:
    for text in ("说女生都不会开车就是刻板印象", "地域黑要不得，哪里都有好人坏人", "这不是歧视吗？"):
        verdict = embedded_analyzer.read_text(text).verdict
        assert verdict.harm_type.value == "none" and verdict.intent.value == "counter_speech", text
        kb = next(s for s in verdict.signals if s.source == "kb")
        assert kb.backs == [], text
    explained = embedded_analyzer.read_text("地域黑要不得，哪里都有好人坏人，河南人也很好").verdict.explanation
    assert "提到群体「河南人」" in explained and "反驳或转述歧视" in explained
    verdict = embedded_analyzer.read_text("说女生都不会开车就是刻板印象").verdict
    assert evaluate(load_policy(), verdict).action.value == "allow"


def test_a_knowledge_base_attack_backs_the_harm_type_and_a_denial_does_not(embedded_analyzer: EmbeddedAnalyzer) -> None:
    def backs(text: str) -> list[str]:
        return next(s for s in embedded_analyzer.read_text(text).verdict.signals if s.source == "kb").backs

    assert backs("你个sb赶紧去死") == ["harm_type"]
    assert backs("你不是废物") == []  # negated
    assert backs("我就是个废物") == []  # self-directed: venting
    assert backs("你个sb 手动狗头") == []  # a joke marker softens it


def test_topic_words_alone_never_decide_a_harm_type(embedded_analyzer: EmbeddedAnalyzer) -> None:
    verdict = embedded_analyzer.read_text("我的同性恋朋友要结婚了，真替他们高兴").verdict
    assert verdict.harm_type.value == "none"
    assert "targeted.lgbt-topic" in " ".join(s for sig in verdict.signals for s in sig.evidence)


def test_a_batch_gets_the_verdicts_each_meme_gets_alone(embedded_analyzer: EmbeddedAnalyzer) -> None:
    """One OCR pass and one classifier pass over a worker batch change the cost, not a verdict; a meme whose
    text the fingerprint stage already read is not read again."""
    memes = [("你个sb赶紧去死", ""), ("笑死我了", "狗头保命"), ("我直接躺平摆烂了", ""), ("早上好，今天也要开心", "")]
    items = [AnalysisInput(decode_frames(render_meme(c), 4), p) for c, p in memes]
    items.append(AnalysisInput([], "", ocr_text="你就是个垃圾"))
    alone = [embedded_analyzer.analyze(item) for item in items]
    together = embedded_analyzer.analyze_batch(items)
    assert [_timeless(r.verdict) for r in together] == [_timeless(r.verdict) for r in alone]
    assert together[-1].timings["ocr_ms"] == 0.0 and together[0].timings["ocr_ms"] > 0


def _timeless(verdict: Verdict) -> dict[str, object]:
    """A verdict without its stage latencies (what differs between two readings of the same meme)."""
    return verdict.model_dump(exclude={"signals"}) | {
        "signals": [s.model_dump(exclude={"latency_ms"}) for s in verdict.signals]
    }
