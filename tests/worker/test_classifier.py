from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memeguard.schemas import HarmType
from worker.classifier import HarmClassifier, kb_features, meanings
from worker.kb import KnowledgeBase, normalize

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


def test_without_contexts_the_context_block_is_left_out(classifier: HarmClassifier) -> None:
    assert classifier.context_vectorizer is None and classifier.meaning_vectorizer is not None


def test_post_context_is_a_feature_block_of_its_own() -> None:
    texts = ["看看这个", "今天的图", "来了来了", "发个图"] * 10
    contexts = ["一只猫在阳光下睡觉", "一片花田和蓝天"] * 10 + ["一个人躺在床上不想起来", "灰暗房间里躺平的人"] * 10
    labels = [0] * 20 + [4] * 20
    model = HarmClassifier.fit(texts, labels, KB, contexts=contexts)
    assert model.context_vectorizer is not None
    (calm, *_), (flat, *_) = model.predict(["看看这个"] * 2, KB, contexts=["猫在阳光下睡觉", "躺平的人不想起来"])
    assert (calm, flat) == (HarmType.NONE, HarmType.DISPIRITED_CULTURE)


def test_entry_meanings_reach_the_model() -> None:
    matches = KB.match("你个sb")
    assert meanings(matches) == normalize(" ".join(m.entry.note for m in matches)) and meanings(matches)
    assert meanings([]) == ""


def test_nb_voter_weights_features_by_class_ratio() -> None:
    from scipy import sparse

    from worker.classifier import NbVoter

    features = sparse.csr_matrix(np.array([[1, 0, 1], [1, 0, 0], [0, 1, 1], [0, 1, 0]] * 5, dtype=float))
    y = np.array([0, 0, 1, 1] * 5)
    voter = NbVoter.fit(features, y, [0, 1])
    assert voter.ratios[0][0] > 0 > voter.ratios[0][1] and abs(voter.ratios[0][2]) < 1e-9  # shared feature: 0
    probs = voter.proba(features[:4])
    assert np.allclose(probs.sum(axis=1), 1.0) and list(probs.argmax(axis=1)) == [0, 0, 1, 1]


def test_version_changes_with_the_knowledge_base() -> None:
    small = KnowledgeBase(KB.entries[:50], "test-small")
    assert HarmClassifier.fit(TEXTS, LABELS, small).version != HarmClassifier.fit(TEXTS, LABELS, KB).version


@pytest.fixture(scope="module")
def semantic() -> HarmClassifier:
    from worker.encoder import shared_encoder

    return HarmClassifier.fit(TEXTS, LABELS, KB, source="unit", encoder=shared_encoder())


def test_sentence_encoder_block_is_part_of_the_features(semantic: HarmClassifier,
                                                        classifier: HarmClassifier) -> None:
    assert semantic.semantic is not None and semantic.semantic.mean is not None
    plain = classifier._features(["早上好"], [""], [[]])
    with_vectors = semantic._features(["早上好"], [""], [[]])
    encoder = semantic.semantic.encoder
    assert encoder is not None and with_vectors.shape[1] == plain.shape[1] + 2 * encoder.dim
    assert semantic.trained["encoder"] == encoder.id and classifier.trained["encoder"] == "none"
    assert semantic.version != classifier.version  # the encoder is part of what a version names
    predictions = semantic.predict(["早上好", "你这个废物", "摆烂了"], KB)
    assert [p[0] for p in predictions] == [HarmType.NONE, HarmType.GENERAL_OFFENSE, HarmType.DISPIRITED_CULTURE]


def test_semantic_artefact_keeps_the_encoder_id_not_the_engine(semantic: HarmClassifier, tmp_path: Path) -> None:
    path = semantic.save(tmp_path / "s.joblib")
    loaded = HarmClassifier.load(path)
    assert loaded.semantic is not None and loaded.semantic.encoder is None  # the engine is not pickled
    texts, contexts = ["人间不值得", "你个蠢货"], ["一个人躺着", ""]
    before = semantic.predict(texts, KB, contexts=contexts)
    after = loaded.predict(texts, KB, contexts=contexts)
    assert [p[0] for p in after] == [p[0] for p in before]
    assert np.allclose([p[2] for p in after], [p[2] for p in before])
    assert json.loads(path.with_suffix(".json").read_text())["encoder"] == semantic.trained["encoder"]


def test_semantic_artefact_from_another_encoder_is_refused(semantic: HarmClassifier, tmp_path: Path) -> None:
    from dataclasses import replace

    assert semantic.semantic is not None
    foreign = replace(semantic, semantic=replace(semantic.semantic, encoder_id="other-encoder", encoder=None))
    loaded = HarmClassifier.load(foreign.save(tmp_path / "f.joblib"))
    with pytest.raises(ValueError, match="retrain"):
        loaded.predict(["早上好"], KB)


def test_neighbour_voter_balances_the_labels_of_the_nearest_texts() -> None:
    from worker.classifier import NeighbourVoter

    unit = np.eye(4, dtype=np.float32)
    # training: three 'none' texts along axis 0, one 'dispirited' text along axis 1, one 'offense' on axis 2
    vectors = np.stack([unit[0], unit[0], unit[0], unit[1], unit[2]])
    voter = NeighbourVoter.fit(vectors, np.array([0, 0, 0, 4, 3]))
    voter.k = 3
    assert np.allclose(voter.priors, [0.6, 0, 0, 0.2, 0.2])
    near_none, near_dispirited = voter.proba(np.stack([unit[0], unit[1]]))
    assert near_none.argmax() == 0 and near_dispirited.argmax() == 4
    assert np.allclose(near_none.sum(), 1.0) and near_none[1] == near_none[2] == 0.0  # absent classes get nothing
    # a little nearer the lone 'dispirited' text than the three 'none' ones: outnumbered 3:1 among the four
    # nearest, the rarer class still wins the balanced vote
    voter.k = 4
    between = unit[0] + 1.2 * unit[1]
    votes = voter.proba((between / np.linalg.norm(between))[None, :])[0]
    assert votes.argmax() == 4 and votes[0] > 0.0


def test_semantic_classifier_remembers_its_training_memes(semantic: HarmClassifier) -> None:
    assert semantic.neighbours is not None and len(semantic.neighbours.labels) == len(TEXTS)
    assert semantic.semantic is not None
    votes = semantic.neighbours.proba(semantic.semantic.vectors(["不想活了", "你个傻逼"]))
    assert list(votes.argmax(axis=1)) == [4, 3]  # the training texts themselves vote for their own labels


def test_share_calibrator_maps_vote_shares_to_how_often_they_are_right() -> None:
    from worker.classifier import ShareCalibrator

    rng = np.random.default_rng(0)
    shares = rng.uniform(0.2, 1.0, 20000)
    right = (rng.uniform(size=shares.size) < shares**3).astype(float)  # the raw share is over-confident
    calibrator = ShareCalibrator.fit(shares, right)
    for share in (0.4, 0.7, 0.9):
        assert abs(float(calibrator(np.array([share]))[0]) - share**3) < 0.06
    assert ShareCalibrator.fit(np.zeros(0), np.zeros(0)) == ShareCalibrator.identity()
    always = ShareCalibrator.fit(np.array([0.5, 0.9]), np.array([1.0, 1.0]))
    assert np.allclose(always(np.array([0.3, 0.95])), 0.99)  # a constant, never a certainty


def test_confidence_is_the_calibrated_share_of_the_winning_label(semantic: HarmClassifier) -> None:
    for label, confidence, shares in semantic.predict(["早上好", "你个蠢货", "人间不值得"], KB):
        assert label.value == LABELS_BY_ID[int(np.argmax(shares))] and abs(sum(shares) - 1.0) < 1e-6
        assert confidence == pytest.approx(float(semantic.calibrator(np.array([max(shares)]))[0]))
    # the toy data repeats each text 8 times: out of fold every vote is right, so confidence is a flat 0.99
    assert semantic.calibrator.slope == 0 and 0.98 < confidence < 1.0


LABELS_BY_ID = [h.value for h in HarmType]
