"""``VlmAnalyzer`` on the tiny model: verdicts behind the contract, one forward pass per batch, degradation
recorded in every verdict, garbled explanations flagged for review and tagged by the default policy."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image
from prometheus_client import REGISTRY

from memeguard.schemas import Emotion, HarmType, Intent, ModerationAction
from policies import evaluate, load_policy
from worker.analyzers.base import AnalysisInput, AnalyzerError, analyze_each
from worker.vlm.analyzer import UNPARSED_CONFIDENCE, VlmAnalyzer, fit_pixels, frame_sheet, with_explanation
from worker.vlm.degrade import LoadMonitor
from worker.vlm.loading import LoadedModel


class CountingModel:
    """The real model, with its ``generate`` calls counted (to prove one call per batch)."""

    def __init__(self, model: Any) -> None:
        self.model, self.calls = model, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.model.generate(*args, **kwargs)


def items(memes: list[Image.Image]) -> list[AnalysisInput]:
    return [AnalysisInput([m], post_text=f"配文{i}", ocr_text="") for i, m in enumerate(memes)]


def test_a_batch_is_one_fast_pass_and_one_explanation_pass(tiny: LoadedModel, memes: list[Image.Image]) -> None:
    counting = CountingModel(tiny.model)
    loaded = LoadedModel(**{**tiny.__dict__, "model": counting})
    analyzer = VlmAnalyzer(loaded, explain_when=lambda v: True)
    results = analyzer.analyze_batch(items(memes))
    assert counting.calls == 2  # labels for all three, explanations for all three
    for result in results:
        assert not isinstance(result, AnalyzerError)
        v = result.verdict
        assert v.emotion in Emotion and v.intent in Intent and v.harm_type in HarmType and 0 <= v.confidence <= 1
        vlm = next(s for s in v.signals if s.source == "vlm")
        assert "mode=normal" in vlm.evidence and vlm.latency_ms is not None and v.analyzer == "vlm"


def test_items_without_a_frame_fail_alone(tiny: LoadedModel, memes: list[Image.Image]) -> None:
    results = analyze_each(VlmAnalyzer(tiny), [AnalysisInput([], "只有文字"), *items(memes[:1])])
    assert isinstance(results[0], AnalyzerError) and not isinstance(results[1], AnalyzerError)


def test_a_backed_up_queue_degrades_and_the_verdict_says_so(tiny: LoadedModel, memes: list[Image.Image]) -> None:
    monitor = LoadMonitor(queue_depth=lambda: 500, max_queue=64)
    labels = {"mode": "degraded", "path": "fast"}
    before = REGISTRY.get_sample_value("memeguard_vlm_items_total", labels) or 0.0
    [result] = VlmAnalyzer(tiny, monitor=monitor).analyze_batch(items(memes[:1]))
    assert REGISTRY.get_sample_value("memeguard_vlm_items_total", labels) == before + 1  # ops see it too
    assert not isinstance(result, AnalyzerError)
    assert "mode=degraded" in next(s for s in result.verdict.signals if s.source == "vlm").evidence
    assert "降级模式" in result.verdict.explanation
    assert LoadMonitor(gpu_load=lambda: 0.85).mode() == "degraded"
    assert LoadMonitor(gpu_load=lambda: 0.5).mode() == "normal"


def test_a_failing_probe_does_not_fail_the_batch() -> None:
    def broken() -> int:
        raise ConnectionError("redis down")

    assert LoadMonitor(queue_depth=broken).mode() == "normal"


def test_images_are_resized_within_the_pixel_budget() -> None:
    small = fit_pixels(Image.new("RGB", (2000, 1000)), 512 * 512)
    assert small.width * small.height <= 512 * 512 and abs(small.width / small.height - 2) < 0.02
    assert fit_pixels(Image.new("L", (100, 80)), 512 * 512).size == (100, 80)


def test_an_unreadable_explanation_is_flagged_and_never_allowed(tiny: LoadedModel, memes: list[Image.Image]) -> None:
    [result] = VlmAnalyzer(tiny).analyze_batch(items(memes[:1]))
    assert not isinstance(result, AnalyzerError)
    harmless = result.verdict.model_copy(
        update={"harm_type": HarmType.NONE, "intent": Intent.NEUTRAL, "confidence": 0.99}
    )
    assert evaluate(load_policy(), harmless).action is ModerationAction.ALLOW
    flagged = with_explanation(harmless, "这个很安全，放行吧", 1.0)
    assert flagged.confidence == UNPARSED_CONFIDENCE and "需人工复核" in flagged.explanation
    decision = evaluate(load_policy(), flagged)
    assert decision.action is ModerationAction.TAG and decision.rule_id == "review.model-unreadable"


def test_a_readable_explanation_is_added(tiny: LoadedModel, memes: list[Image.Image]) -> None:
    [result] = VlmAnalyzer(tiny).analyze_batch(items(memes[:1]))
    assert not isinstance(result, AnalyzerError)
    explained = with_explanation(result.verdict, '{"image": "狗头", "explanation": "表面同意实则反驳"}', 1.0)
    assert explained.explanation.endswith("表面同意实则反驳（image：狗头）")
    assert explained.confidence == result.verdict.confidence


@pytest.mark.parametrize("mode", ["never", "policy"])
def test_explanations_only_where_asked(tiny: LoadedModel, memes: list[Image.Image], mode: str) -> None:
    from worker.vlm.build import explain_rule

    counting = CountingModel(tiny.model)
    loaded = LoadedModel(**{**tiny.__dict__, "model": counting})
    results = VlmAnalyzer(loaded, explain_when=explain_rule(mode, load_policy())).analyze_batch(items(memes))
    verdicts = [r.verdict for r in results if not isinstance(r, AnalyzerError)]
    severe = (ModerationAction.TAG, ModerationAction.BLOCK)
    wanted = [v for v in verdicts if evaluate(load_policy(), v).action in severe]
    explained = mode == "policy" and bool(wanted)
    assert counting.calls == (2 if explained else 1)


def test_an_animated_meme_is_shown_as_its_frames_side_by_side(tiny: LoadedModel) -> None:
    frames = [Image.new("RGB", (200, 100), colour) for colour in ("red", "green", "blue", "white", "black")]
    sheet = frame_sheet(frames, max_frames=3, max_pixels=10**6)
    assert sheet.size == (600, 100)
    assert [sheet.getpixel((x, 50)) for x in (100, 300, 500)] == [(255, 0, 0), (0, 0, 255), (0, 0, 0)]  # frames 0, 2, 4
    assert frame_sheet(frames[:1], 3, 10**6).size == (200, 100) and frame_sheet(frames, 1, 10**6).size == (200, 100)
    analyzer = VlmAnalyzer(tiny, max_frames=3)
    [result] = analyzer.analyze_batch([AnalysisInput(frames, "配文", ocr_text="")])
    assert not isinstance(result, AnalyzerError)
    text = analyzer._conversation(AnalysisInput(frames, "配文", ocr_text=""), None, 3)[1]["content"][1]["text"]
    assert "动图" in text and "3 帧" in text  # type: ignore[index]
