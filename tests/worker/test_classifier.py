from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memeguard.schemas import HarmType
from worker.classifier import CLASSES, COUNTER, HarmClassifier, kb_features, meanings
from worker.knowledge import KnowledgeBase, normalize

KB = KnowledgeBase.bundled()
TEXTS = (
    ["今天天气真好", "早上好呀", "周末去爬山", "这个视频好看"] * 8
    + ["你个傻逼", "滚蛋吧废物", "蠢货闭嘴", "你就是个垃圾"] * 8
    + ["不想活了", "躺平摆烂", "人间不值得", "努力有什么用"] * 8
)
LABELS = [0] * 32 + [3] * 32 + [4] * 32


@pytest.fixture(scope="module")
def classifier() -> HarmClassifier:
    return HarmClassifier.fit(TEXTS, LABELS, KB, source="unit")


def test_learns_and_predicts_with_calibrated_probabilities(classifier: HarmClassifier) -> None:
    predictions = classifier.predict(["早上好", "你这个废物", "摆烂了"], KB)
    assert [p.harm for p in predictions] == [HarmType.NONE, HarmType.GENERAL_OFFENSE, HarmType.DISPIRITED_CULTURE]
    for reading in predictions:
        assert 0.0 <= reading.confidence <= 1.0 and abs(sum(reading.shares) - 1.0) < 1e-6
        assert len(reading.shares) == len(CLASSES) and not reading.counter_speech
        assert reading.similarity is None and not reading.novel  # no encoder: no distance to training


def test_knowledge_base_hits_are_features() -> None:
    assert kb_features(KB.match("你个sb 手动狗头")) == {
        "kb_harm=general_offense": 0.85,
        "kb_intent=explicit_attack": 0.85,
        "kb_intent=humor": 0.5,
        "kb_softener": 1.0,
    }
    # a topic word (harm depends on the sentence) is a feature of its own, never the evidence feature
    assert kb_features(KB.match("他是基佬")) == {"kb_topic=targeted_harm": 0.35, "kb_intent=neutral": 0.35}


def test_artefact_round_trip_is_versioned(classifier: HarmClassifier, tmp_path: Path) -> None:
    path = classifier.save(tmp_path / "m.joblib")
    loaded = HarmClassifier.load(path)
    assert loaded.version == classifier.version and loaded.version.startswith("tfidf-lr-")
    assert loaded.predict(["你个傻逼"], KB)[0].harm == HarmType.GENERAL_OFFENSE
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["items"] == len(TEXTS) and meta["kb_version"] == KB.version


def test_same_data_same_version(classifier: HarmClassifier) -> None:
    assert HarmClassifier.fit(TEXTS, LABELS, KB).version == classifier.version


def test_loading_something_else_is_a_clear_error(tmp_path: Path) -> None:
    import joblib

    joblib.dump({"not": "ours"}, tmp_path / "x.joblib")
    with pytest.raises(ValueError, match="not a memeguard classifier"):
        HarmClassifier.load(tmp_path / "x.joblib")
    joblib.dump({"format": 4, "classifier": None}, tmp_path / "old.joblib")
    with pytest.raises(ValueError, match="older memeguard's: retrain"):
        HarmClassifier.load(tmp_path / "old.joblib")
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
    calm, flat = model.predict(["看看这个"] * 2, KB, contexts=["猫在阳光下睡觉", "躺平的人不想起来"])
    assert (calm.harm, flat.harm) == (HarmType.NONE, HarmType.DISPIRITED_CULTURE)


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


def test_a_batch_is_read_as_each_text_alone(semantic: HarmClassifier) -> None:
    """The analyzer reads a worker batch's texts in one classifier pass (one encoder call)."""
    from worker.analyzers.embedded import EmbeddedAnalyzer

    analyzer = EmbeddedAnalyzer(KB, lambda frames: "", semantic)
    texts = [("你就是个垃圾", ""), ("早上好呀", "周末去爬山"), ("躺平摆烂", ""), ("", "")]
    together = analyzer.read_texts([(t, p, {}, 0.0) for t, p in texts])
    assert [r.verdict for r in together] == [analyzer.read_text(t, p).verdict for t, p in texts]


def test_sentence_encoder_block_is_part_of_the_features(semantic: HarmClassifier, classifier: HarmClassifier) -> None:
    assert semantic.semantic is not None and semantic.semantic.mean is not None
    plain = classifier._features(["早上好"], [""], [[]])
    with_vectors = semantic._features(["早上好"], [""], [[]])
    encoder = semantic.semantic.encoder
    assert encoder is not None and with_vectors.shape[1] == plain.shape[1] + 2 * encoder.dim
    assert semantic.trained["encoder"] == encoder.id and classifier.trained["encoder"] == "none"
    assert semantic.version != classifier.version  # the encoder is part of what a version names
    predictions = semantic.predict(["早上好", "你这个废物", "摆烂了"], KB)
    assert [p.harm for p in predictions] == [HarmType.NONE, HarmType.GENERAL_OFFENSE, HarmType.DISPIRITED_CULTURE]


def test_semantic_artefact_keeps_the_encoder_id_not_the_engine(semantic: HarmClassifier, tmp_path: Path) -> None:
    path = semantic.save(tmp_path / "s.joblib")
    loaded = HarmClassifier.load(path)
    assert loaded.semantic is not None and loaded.semantic.encoder is None  # the engine is not pickled
    texts, contexts = ["人间不值得", "你个蠢货"], ["一个人躺着", ""]
    before = semantic.predict(texts, KB, contexts=contexts)
    after = loaded.predict(texts, KB, contexts=contexts)
    assert [p.harm for p in after] == [p.harm for p in before]
    assert np.allclose([p.shares for p in after], [p.shares for p in before])
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
    assert np.allclose(voter.priors, [0.6, 0, 0, 0.2, 0.2, 0])
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


def test_calibrator_maps_shares_distance_and_kb_evidence_to_how_often_they_are_right() -> None:
    from worker.classifier import Calibrator, Decisions

    rng = np.random.default_rng(0)
    n = 60000
    shares, similarity = rng.uniform(0.2, 1.0, n), rng.uniform(0.6, 1.0, n)
    support = np.where(rng.uniform(size=n) < 0.3, 0.8, 0.0)
    harmful = np.ones(n, dtype=bool)
    # the raw share is over-confident, more so far from the training data; KB evidence makes it more often right

    def truth(share: np.ndarray, sim: np.ndarray, kb: np.ndarray) -> np.ndarray:
        return np.asarray(1 / (1 + np.exp(-(2 * np.log(share / (1 - share)) - 6 * (1 - sim) + 2 * kb - 0.5))))

    right = rng.uniform(size=n) < truth(shares.clip(0.01, 0.99), similarity, support)
    y = np.where(right, 1, 0)  # class ids: decided class 1 is right when the truth is 1
    calibrator = Calibrator.fit(
        Decisions(np.ones(n, dtype=int), harmful, shares, support), y, similarity, np.array(["a"] * n)
    )

    def confidence(share: float, sim: float, kb: float) -> float:
        one = Decisions(np.ones(1, dtype=int), np.array([True]), np.array([share]), np.array([kb]))
        return float(calibrator(one, np.array([sim]))[0])

    for share, sim, kb in ((0.5, 0.95, 0.0), (0.9, 0.95, 0.0), (0.9, 0.65, 0.0), (0.7, 0.9, 0.8)):
        expected = float(truth(np.array([share]), np.array([sim]), np.array([kb]))[0])
        assert abs(confidence(share, sim, kb) - expected) < 0.03
    assert confidence(0.9, 0.65, 0.0) < confidence(0.9, 0.95, 0.0) - 0.1  # far out: less confidence
    assert confidence(0.7, 0.9, 0.8) > confidence(0.7, 0.9, 0.0) + 0.1  # corroborated: more


def test_confidence_is_the_calibrated_decision_share(semantic: HarmClassifier) -> None:
    from worker.classifier import Decisions, _read_all, attack_strengths

    texts = ["早上好", "你个蠢货", "人间不值得"]
    attacks = attack_strengths(_read_all(KB, texts, [""] * 3))
    for reading, row in zip(semantic.predict(texts, KB), attacks, strict=True):
        decided = LABELS_BY_ID.index(reading.harm.value)
        harmful = reading.harm is not HarmType.NONE
        share = reading.shares[decided] if harmful else 1.0 - reading.harmful_share
        support = row[decided] if harmful else row.max()
        one = Decisions(np.array([decided]), np.array([harmful]), np.array([share]), np.array([support]))
        assert reading.confidence == pytest.approx(float(semantic.calibrator(one, np.array([reading.similarity]))[0]))
    # the toy data repeats each text 8 times: out of fold every vote is right, so confidence is a flat 0.99
    assert semantic.calibrator.harmful[0] == 0 and 0.98 < reading.confidence < 1.0


def test_counter_speech_is_a_class_of_its_own_read_as_harmless() -> None:
    texts = TEXTS + ["地域黑要不得", "说女生不会开车是刻板印象", "不要歧视河南人", "哪里都有好人坏人"] * 8
    model = HarmClassifier.fit(texts, LABELS + [COUNTER] * 32, KB, source="unit")
    counter, attack, plain = model.predict(["别再地域黑了", "你个傻逼", "周末去爬山"], KB)
    assert (counter.harm, counter.counter_speech) == (HarmType.NONE, True)
    assert (attack.harm, attack.counter_speech) == (HarmType.GENERAL_OFFENSE, False)
    assert (plain.harm, plain.counter_speech) == (HarmType.NONE, False)
    assert model.trained["classes"]["counter_speech"] == 32


def test_the_harmful_threshold_is_chosen_out_of_fold_for_every_source_alike() -> None:
    from worker.classifier import choose_threshold

    # source a: harmful items have harmful shares around 0.7, harmless around 0.3; source b is shifted up
    rng = np.random.default_rng(1)
    y = np.array([3] * 200 + [0] * 200 + [3] * 200 + [0] * 200)
    groups = np.array(["a"] * 400 + ["b"] * 400)
    harmful_share = np.concatenate(
        [
            rng.normal(0.55, 0.05, 200),
            rng.normal(0.35, 0.05, 200),
            rng.normal(0.75, 0.05, 200),
            rng.normal(0.50, 0.05, 200),
        ]
    ).clip(0, 1)
    shares = np.zeros((800, len(CLASSES)))
    shares[:, 3], shares[:, 0] = harmful_share, 1 - harmful_share
    threshold = choose_threshold(shares, y, groups, max_false_alarm=1.0)
    assert 0.44 <= threshold <= 0.54  # the best F1 averaged over both sources, not just the larger one's
    bounded = choose_threshold(shares, y, groups)  # no source may see more than 10 % of its harmless flagged
    flagged_harmless_b = (harmful_share[600:] >= bounded).mean()
    assert bounded > threshold and flagged_harmless_b <= 0.10
    strict = choose_threshold(shares, y, groups, max_false_alarm=0.0)
    assert strict > harmful_share[(y == 0)].max()  # no harmless item flagged at all


def test_novelty_threshold_is_a_low_quantile_of_training_nearest_neighbours() -> None:
    from worker.classifier import NOVELTY_QUANTILE, novelty_threshold

    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    threshold = novelty_threshold(vectors, [True] * 500)
    nearest = np.sort(np.array([max(v @ w for j, w in enumerate(vectors) if j != i) for i, v in enumerate(vectors)]))
    assert threshold == pytest.approx(float(np.quantile(nearest, NOVELTY_QUANTILE)), abs=1e-5)
    assert novelty_threshold(vectors, [False] * 500) == 0.0  # no text, nothing to compare


def test_semantic_classifier_says_how_near_a_text_is_to_its_training_data(semantic: HarmClassifier) -> None:
    assert semantic.novelty is not None and semantic.trained["novelty"] == semantic.novelty
    seen, unseen, empty = semantic.predict(["不想活了", "The quarterly revenue report is attached.", ""], KB)
    assert seen.similarity is not None and seen.similarity > 0.99 and not seen.novel
    assert unseen.similarity is not None and unseen.similarity < seen.similarity
    assert empty.similarity is None and not empty.novel  # an image without words is not novel text


def test_sources_are_weighted_and_reported_each() -> None:
    texts = TEXTS * 2
    labels = LABELS * 2
    groups = ["a"] * len(TEXTS) + ["b"] * len(TEXTS)
    model = HarmClassifier.fit(
        texts,
        labels,
        KB,
        groups=groups,
        weights=[1.0] * len(TEXTS) + [0.5] * len(TEXTS),
        sources=[{"name": "a"}, {"name": "b"}],
    )
    assert set(model.trained["out_of_fold"]) == {"a", "b"}
    assert all(0.0 <= row["ece"] <= 1.0 and row["n"] == len(TEXTS) for row in model.trained["out_of_fold"].values())
    assert model.trained["sources"] == [{"name": "a"}, {"name": "b"}]
    unweighted = HarmClassifier.fit(texts, labels, KB, groups=groups)
    assert unweighted.version != model.version  # weights are part of what a version names


def test_a_classifier_refuses_a_knowledge_base_it_was_not_trained_with(classifier: HarmClassifier) -> None:
    classifier.check_kb(KB)
    with pytest.raises(ValueError, match="MEMEGUARD_KB_EXTERNAL"):
        classifier.check_kb(KnowledgeBase(KB.entries[:10], "other"))


def test_the_reviewed_overlay_reaches_a_classifier_through_the_features_every_entry_has(
    classifier: HarmClassifier,
) -> None:
    """An approved overlay entry is allowed on top of the training knowledge base (not on another one) and
    reaches the model through the harm / intent / meaning features, with no column of its own."""
    from lexicon.store import Draft
    from worker.overlay import entry_of

    slur = entry_of(1, Draft(("臭鱼烂虾",), "骂人无能的蔑称", harm="general_offense", evidence=True, weight=0.9))
    overlaid = KB.overlaid([slur], 3)
    assert overlaid.version == f"{KB.version}+overlay3" and overlaid.base_version == KB.version
    classifier.check_kb(overlaid)
    with pytest.raises(ValueError, match="MEMEGUARD_KB_EXTERNAL"):
        classifier.check_kb(KnowledgeBase(KB.entries[:10], "other").overlaid([slur], 3))
    text = "你真是个臭鱼烂虾"
    assert kb_features(overlaid.match(text)) == {"kb_harm=general_offense": 0.9}
    assert not kb_features(KB.match(text))
    before, after = classifier.predict([text], KB)[0], classifier.predict([text], overlaid)[0]
    offence = CLASSES.index(HarmType.GENERAL_OFFENSE.value)
    assert after.shares[offence] > before.shares[offence]  # the model weighs what the entry says


LABELS_BY_ID = [h.value for h in HarmType]


def test_ngrams_and_the_encoder_read_clauses_not_across_them() -> None:
    from worker.classifier import for_encoder, ngram_text

    assert ngram_text("笑死，狗都不理") == "笑死 狗都不理" and for_encoder("笑死，狗都不理") == "笑死，狗都不理"
    vectorizer = HarmClassifier.blank(None).vectorizer
    vectorizer.set_params(min_df=1)
    grams = set(vectorizer.fit([ngram_text("笑死，狗都不理")]).get_feature_names_out())
    assert "死狗" not in grams and "狗都" in grams
    # OCR's other punctuation marks, line breaks and spacing read the same
    assert for_encoder("笑死, 狗都\n不理") == for_encoder("笑死。狗都不理") == for_encoder("笑死，狗都不理")


def test_the_shipped_classifier_is_loaded_with_the_knowledge_bases_it_was_trained_with(tmp_path: Path) -> None:
    from memeguard.settings import Settings
    from worker.analyzers.embedded import EmbeddedAnalyzer

    external = tmp_path / "extra.yaml"
    external.write_text(
        "version: x1\nentries:\n  - {id: extra.a, phrases: [蓝瘦香菇], emotion: sadness, "
        "note: 难受想哭, examples: [蓝瘦香菇]}\n",
        encoding="utf-8",
    )
    kb = KB.merged(KnowledgeBase.load_any(external))
    model = HarmClassifier.fit(TEXTS, LABELS, kb, kb_external=[external])
    model.save(tmp_path / "models" / "current.joblib")
    analyzer = EmbeddedAnalyzer.default(Settings(data_dir=tmp_path))
    assert analyzer.classifier is not None and analyzer.classifier.version == model.version
    assert analyzer.kb.version == kb.version  # the external base came from the artefact, not the settings
    with pytest.raises(ValueError, match="MEMEGUARD_KB_EXTERNAL"):
        EmbeddedAnalyzer.default(Settings(data_dir=tmp_path, kb_external=[]))  # set, and not the same
    external.unlink()
    with pytest.raises(FileNotFoundError, match="MEMEGUARD_KB_EXTERNAL to where they are now"):
        EmbeddedAnalyzer.default(Settings(data_dir=tmp_path))
