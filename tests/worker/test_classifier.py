from __future__ import annotations

import json
from pathlib import Path

import pytest

from memeguard.schemas import HarmType
from worker.classifier import HarmClassifier, kb_features
from worker.kb import KnowledgeBase

KB = KnowledgeBase.bundled()
TEXTS = (["今天天气真好", "早上好呀", "周末去爬山", "这个视频好看"] * 8
         + ["你个傻逼", "滚蛋吧废物", "蠢货闭嘴", "你就是个垃圾"] * 8
         + ["不想活了", "躺平摆烂", "人间不值得", "努力有什么用"] * 8)
LABELS = [0] * 32 + [3] * 32 + [4] * 32


@pytest.fixture(scope="module")
def classifier() -> HarmClassifier:
    return HarmClassifier.fit(TEXTS, LABELS, KB, source="unit")


def test_learns_and_predicts_with_calibrated_probabilities(classifier: HarmClassifier) -> None:
    predictions = classifier.predict(["早上好", "你这个废物", "摆烂了"], KB)
    assert [p[0] for p in predictions] == [HarmType.NONE, HarmType.GENERAL_OFFENSE, HarmType.DISPIRITED_CULTURE]
    for _, probability, distribution in predictions:
        assert 0.0 <= probability <= 1.0 and abs(sum(distribution) - 1.0) < 1e-6


def test_knowledge_base_hits_are_features() -> None:
    assert kb_features(KB.match("你个sb 手动狗头")) == {
        "kb_harm=general_offense": 0.85, "kb_intent=explicit_attack": 0.85, "kb_intent=humor": 0.5, "kb_softener": 1.0}


def test_artefact_round_trip_is_versioned(classifier: HarmClassifier, tmp_path: Path) -> None:
    path = classifier.save(tmp_path / "m.joblib")
    loaded = HarmClassifier.load(path)
    assert loaded.version == classifier.version and loaded.version.startswith("tfidf-lr-")
    assert loaded.predict(["你个傻逼"], KB)[0][0] == HarmType.GENERAL_OFFENSE
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["items"] == len(TEXTS) and meta["kb_version"] == KB.version


def test_same_data_same_version(classifier: HarmClassifier) -> None:
    assert HarmClassifier.fit(TEXTS, LABELS, KB).version == classifier.version


def test_loading_something_else_is_a_clear_error(tmp_path: Path) -> None:
    import joblib

    joblib.dump({"not": "ours"}, tmp_path / "x.joblib")
    with pytest.raises(ValueError, match="not a memeguard classifier"):
        HarmClassifier.load(tmp_path / "x.joblib")
    with pytest.raises(FileNotFoundError, match="memeguard train"):
        HarmClassifier.load(tmp_path / "missing.joblib")


def test_analyzer_uses_the_classifier_and_says_so(classifier: HarmClassifier) -> None:
    from worker.analyzers.embedded import EmbeddedAnalyzer

    analyzer = EmbeddedAnalyzer(KB, lambda frames: "", classifier)
    verdict = analyzer.read_text("你就是个垃圾").verdict
    assert verdict.harm_type is HarmType.GENERAL_OFFENSE
    learned = next(s for s in verdict.signals if s.source == "classifier")
    assert learned.decided == ["harm_type", "confidence"]
    assert verdict.confidence == pytest.approx(learned.weight, abs=1e-3)
    assert classifier.version in verdict.analyzer_version
    assert "文本分类器" in verdict.explanation
