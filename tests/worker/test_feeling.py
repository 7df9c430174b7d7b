"""Emotion and attack style learned from data, combined with the knowledge base's cues."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from memeguard.schemas import Emotion, Intent
from worker import feeling
from worker.analyzers.embedded import EmbeddedAnalyzer
from worker.classifier import HarmClassifier
from worker.datasets import DataError, Source, load_clue_emotion, load_jsonl
from worker.emotion_lexicon import EmotionLexicon, LexiconError
from worker.feeling import (
    CountVote,
    Feeling,
    LabelModel,
    choose_threshold,
    settle_emotion,
    strongest_cue,
    words_of,
)
from worker.knowledge import KnowledgeBase
from worker.match_reading import read

KB = KnowledgeBase.bundled()
DATASETS = Path(os.environ.get("MEMEGUARD_DATASETS_DIR", Path(__file__).parents[3] / "shared" / "datasets"))
CLUE = DATASETS / "clue_emotion"
needs_clue = pytest.mark.skipif(not (CLUE / "valid.txt").exists(), reason="clue_emotion dataset not present")

# a small emotion-labelled set in CLUEmotion's terms (like and happiness both become joy)
FEELINGS = {
    "happiness": [
        "今天好开心啊",
        "太高兴了终于放假",
        "开心到飞起",
        "好快乐的一天",
        "哈哈哈太开心了",
        "高兴得睡不着",
        "心情超级好",
        "今天真快乐",
        "开心开心",
        "快乐每一天",
    ],
    "like": [
        "好喜欢这首歌",
        "爱了爱了",
        "超级喜欢你",
        "喜欢这只猫",
        "真心喜欢这部剧",
        "太喜欢了",
        "喜欢得不得了",
        "我爱这个城市",
        "好爱这家店",
        "喜欢喜欢",
    ],
    "sadness": [
        "好难过想哭",
        "心里好难受",
        "哭了一整晚",
        "伤心透了",
        "难过得说不出话",
        "眼泪止不住",
        "好伤心啊",
        "心碎了",
        "想哭又哭不出来",
        "难受极了",
    ],
    "anger": [
        "气死我了",
        "太气人了吧",
        "真是气炸了",
        "我很生气",
        "火大得很",
        "气得发抖",
        "越想越气",
        "愤怒到极点",
        "简直气死",
        "生气生气",
    ],
}
EMOTION_PAIRS = [(text, label) for label, texts in FEELINGS.items() for text in texts]
IMPLICIT = ["果然是那个地方的人", "也就配这样了", "这种人就该待在老家", "他们那儿的人都一个样", "那边来的能好到哪去"]
HARM_TEXTS = (
    ["今天天气真好", "早上好呀", "周末去爬山", "这个视频好看"] * 8
    + ["你个傻逼", "滚蛋吧废物", "蠢货闭嘴", "你就是个垃圾"] * 8
    + IMPLICIT * 6
)
HARM_LABELS = [0] * 32 + [3] * 32 + [1] * 30
ATTACK_PAIRS = [
    (t, "explicit_attack") for t in ["你个傻逼", "滚蛋吧废物", "蠢货闭嘴", "你就是个垃圾", "去死吧"] * 2
] + [(t, "implicit_attack") for t in IMPLICIT * 2]


@pytest.fixture(scope="module")
def classifier() -> HarmClassifier:
    return HarmClassifier.fit(HARM_TEXTS, HARM_LABELS, KB, source="unit").learn_feelings(
        KB, EMOTION_PAIRS, ATTACK_PAIRS
    )


@pytest.fixture(scope="module")
def analyzer(classifier: HarmClassifier) -> EmbeddedAnalyzer:
    return EmbeddedAnalyzer(KB, lambda _frames: "", classifier)


def test_the_emotion_reader_maps_its_labels_onto_memeguards_emotions(classifier: HarmClassifier) -> None:
    assert classifier.emotion is not None
    assert classifier.emotion.emotions == [Emotion.JOY, Emotion.SADNESS, Emotion.ANGER]  # like + happiness: joy
    texts = ["开心到飞起", "伤心透了", "气死我了"]
    felt = classifier.emotion.read(texts, [[], [], []], None, words_of(KB, texts))
    assert [f.likeliest for f in felt] == [Emotion.JOY, Emotion.SADNESS, Emotion.ANGER]
    assert all(abs(sum(f.probabilities.values()) - 1.0) < 1e-6 for f in felt)
    assert classifier.trained["emotion"]["mapping"]["like"] == "joy"
    assert "out_of_fold" in classifier.trained["emotion"] and "attack_style" in classifier.trained


def test_the_emotion_reader_learns_the_words_the_segmenter_cuts(classifier: HarmClassifier) -> None:
    """Words beside the character n-grams: a knowledge-base phrase is one word (破防, not 破 + 防), the reader
    keeps its word block in the artefact and refuses to read without the words rather than read less."""
    assert words_of(KB, ["看完直接破防，一晚上睡不着"]) == ["看 完 直接 破防 一 晚上 睡不着"]
    reader = classifier.emotion
    assert reader is not None and reader.labels.words is not None and reader.labels.word_weight > 0
    assert {"开心", "伤心"} <= set(reader.labels.words.vocabulary_)
    assert reader.trained["word_weight"] == reader.labels.word_weight
    with pytest.raises(ValueError, match="words_of"):
        reader.read(["开心"], [[]], None, None)


def test_a_reader_trained_before_words_still_reads() -> None:
    """An artefact from before the word block (its LabelModel was pickled without the word fields) reads as it
    did: the class's defaults say it has none."""
    texts, labels = [t for t, _ in EMOTION_PAIRS], [label for _, label in EMOTION_PAIRS]
    old, _ = LabelModel.fit(sorted(set(labels)), texts, labels, [[] for _ in texts], None)
    for name in ("word_weight", "words", "lexicon", "lexicon_weight", "vote"):
        old.__dict__.pop(name)
    assert old.word_weight == 0.0 and old.words is None and old.lexicon is None and old.vote is None
    [row] = old.proba(["开心到飞起"], [[]], None)
    assert abs(row.sum() - 1.0) < 1e-6 and old.labels[int(row.argmax())] in {"happiness", "like"}


def test_the_emotion_reader_fuses_a_count_vote_with_its_regression(classifier: HarmClassifier) -> None:
    """The emotion reader asks complement naive Bayes over character and word counts beside its regression and
    adds its log-probabilities at the vote's weight before calibration; the attack reader has no vote."""
    reader = classifier.emotion
    assert reader is not None and reader.labels.vote is not None and classifier.attack is not None
    assert reader.labels.vote.weight == feeling.EMOTION_VOTE_WEIGHT == reader.trained["vote_weight"] > 0
    assert classifier.attack.labels.vote is None
    texts = ["伤心透了", "气死我了", "超级喜欢你"]
    words = words_of(KB, texts)
    vote = reader.labels.vote
    counts = vote.counts(texts, words)
    assert {"伤心", "开心"} <= set(vote.words.vocabulary_)  # the words, beside the characters
    said = [reader.labels.labels[i] for i in vote.model.predict(counts)]
    assert said == ["sadness", "anger", "like"]  # the vote reads on its own
    fused = reader.labels.proba(texts, [[], [], []], None, words)
    reader.labels.vote = None
    try:
        alone = reader.labels.proba(texts, [[], [], []], None, words)
    finally:
        reader.labels.vote = vote
    assert np.allclose(fused.sum(axis=1), 1.0) and not np.allclose(fused, alone)


def test_a_label_the_vote_never_learned_gets_no_say_from_it() -> None:
    """A fold without any item of a label: the vote neither raises nor lowers it (the mean of its others)."""
    vote = CountVote(1.0)
    texts, labels = ["开心开心", "好开心", "伤心伤心", "好伤心"], np.array([0, 0, 2, 2])
    counts = vote.counts(texts, words_of(KB, texts), fit=True)
    assert vote.words is not None and set(vote.words.vocabulary_) == {"开心", "伤心", "好"}
    learned = CountVote.learn(counts, labels)
    proba = np.full((1, 3), 1 / 3)
    fused = vote.fuse(proba, learned, counts[:1])
    assert fused[0, 0] > fused[0, 1] > fused[0, 2]  # the vote's joy up, its sadness down, the unseen between
    bare = CountVote(1.0)
    bare.counts(["开心", "开怀"], ["开心", "开怀"], fit=True)  # characters repeat, words do not
    assert bare.words is None and bare.counts(["开心"], ["开心"]).shape == (1, len(bare.chars.vocabulary_))


def test_the_artefact_version_names_how_the_emotion_reader_weighs_its_blocks(
    classifier: HarmClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same data, a reader without the vote: another version (a verdict cached under one is not the other's)."""
    monkeypatch.setattr(feeling, "EMOTION_VOTE_WEIGHT", 0.0)
    without = HarmClassifier.fit(HARM_TEXTS, HARM_LABELS, KB, source="unit").learn_feelings(
        KB, EMOTION_PAIRS, ATTACK_PAIRS
    )
    assert without.emotion is not None and without.emotion.labels.vote is None
    assert without.version != classifier.version and without.version.split("-f")[0] == classifier.version.split("-f")[0]


def test_neutral_only_when_no_emotion_is_likely_enough() -> None:
    proba = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.34, 0.33, 0.33]])
    truth = np.array([0, 1, 2])
    # stating the first is worth +1; stating the second or third costs 0.5 each: only the first is stated
    assert 0.4 < choose_threshold(proba, truth) <= 0.9
    assert choose_threshold(np.array([[0.9, 0.1]] * 3), np.array([0, 0, 0])) == 0.2  # always right: state all


def test_a_knowledge_base_cue_names_the_emotion_and_the_model_weighs_in() -> None:
    happy = Feeling(Emotion.JOY, 0.8, Emotion.JOY, "happiness", {Emotion.JOY: 0.8, Emotion.SADNESS: 0.2}, 0.35)
    agreeing = settle_emotion(Emotion.AMUSEMENT, 0.6, happy)  # 笑死: amusement, in joy's family
    assert (agreeing.emotion, agreeing.source, agreeing.confidence) == (Emotion.AMUSEMENT, "kb+model", 0.7)
    disagreeing = settle_emotion(Emotion.DISAPPOINTMENT, 0.6, happy)  # 破防 read as low, the model says joy
    assert (disagreeing.emotion, disagreeing.source) == (Emotion.DISAPPOINTMENT, "kb")
    assert disagreeing.confidence is not None and agreeing.confidence is not None
    assert disagreeing.confidence < agreeing.confidence
    assert settle_emotion(None, 0.0, happy).emotion is Emotion.JOY and settle_emotion(None, 0, happy).source == "model"
    unsure = Feeling(Emotion.NEUTRAL, 0.3, Emotion.JOY, "happiness", {Emotion.JOY: 0.3}, 0.35)
    assert settle_emotion(None, 0.0, unsure) == settle_emotion(None, 0.0, None)
    nothing = settle_emotion(None, 0.0, None)
    assert (nothing.emotion, nothing.confidence, nothing.source) == (Emotion.NEUTRAL, None, "none")


def test_a_denied_cue_gives_no_emotion() -> None:
    assert strongest_cue(read(KB.match("笑死我了"), "笑死我了"))[0] is Emotion.AMUSEMENT
    assert strongest_cue([]) == (None, 0.0, ())
    denied = read(KB.match("我不开心"), "我不开心")  # 开心 is there, and the negator denies it
    assert denied and all(m.denied for m in denied) and strongest_cue(denied) == (None, 0.0, ())


def test_the_verdict_states_a_learned_emotion_and_intent_with_their_evidence(analyzer: EmbeddedAnalyzer) -> None:
    verdict = analyzer.read_text("今天真快乐").verdict  # no knowledge-base entry: the knowledge base alone says neutral
    assert verdict.emotion is Emotion.JOY and verdict.intent is Intent.HUMOR
    assert verdict.emotion_confidence is not None and verdict.intent_confidence == verdict.emotion_confidence
    assert "情绪模型判断" in verdict.explanation and "由情绪推断" in verdict.explanation
    decided = {s.source: s.decided for s in verdict.signals}
    assert decided["emotion_model"] == ["emotion", "intent"] and decided["classifier"] == ["harm_type", "confidence"]


def test_a_knowledge_base_cue_keeps_its_specific_emotion(analyzer: EmbeddedAnalyzer) -> None:
    verdict = analyzer.read_text("笑死").verdict
    assert verdict.emotion is Emotion.AMUSEMENT and "依据知识库「笑死」" in verdict.explanation
    assert "emotion" in {s.source: s.decided for s in verdict.signals}["kb"]


def test_a_harmful_text_without_an_intent_cue_gets_its_attack_style(
    analyzer: EmbeddedAnalyzer, classifier: HarmClassifier
) -> None:
    verdict = analyzer.read_text("你就是个垃圾").verdict
    assert verdict.harm_type.value == "general_offense"
    # the knowledge base names this insult an explicit attack itself: its cue stays
    assert verdict.intent is Intent.EXPLICIT_ATTACK and verdict.intent_confidence is not None
    insinuation = analyzer.read_text("他们那儿的人都一个样").verdict  # no knowledge-base cue names an intent
    assert insinuation.harm_type.value == "targeted_harm" and insinuation.intent is Intent.IMPLICIT_ATTACK
    reading = classifier.predict(["他们那儿的人都一个样"], KB)[0]
    assert reading.style is not None and insinuation.intent_confidence == round(reading.style.confidence, 4)
    assert {s.source: s.decided for s in insinuation.signals}["attack_style"] == ["intent"]
    assert "攻击方式模型判断" in insinuation.explanation


def test_the_readers_survive_the_artefact_round_trip(classifier: HarmClassifier, tmp_path: Path) -> None:
    loaded = HarmClassifier.load(classifier.save(tmp_path / "m.joblib"))
    assert loaded.version == classifier.version and "-f" in loaded.version  # the readers' data is in the version
    assert loaded.predict(["伤心透了"], KB)[0].feeling == classifier.predict(["伤心透了"], KB)[0].feeling


# an emotion lexicon in cntext's layout: 凄凉 and 悲戚 are in no training text, only in the lexicon
LEXICON_YAML = """Name: 测试情感词典
Category: [乐, 哀, 怒]
Dictionary:
  乐: [开心, 快乐, 高兴]
  哀: [伤心, 难过, 凄凉, 悲戚]
  怒: [生气, 愤怒]
"""


@pytest.fixture(scope="module")
def lexicon(tmp_path_factory: pytest.TempPathFactory) -> EmotionLexicon:
    path = tmp_path_factory.mktemp("lexicon") / "lexicon.yaml"
    path.write_text(LEXICON_YAML, encoding="utf-8")
    return EmotionLexicon.load(path)


def test_an_emotion_lexicon_counts_whole_words_per_category(lexicon: EmotionLexicon) -> None:
    assert lexicon.name == "测试情感词典" and lexicon.categories == ("乐", "哀", "怒")
    words = words_of(KB, ["开心开心，又伤心", "好像没什么", "凄凉"])
    counts = lexicon.counts(words)
    assert np.allclose(counts[0], np.log1p([2, 1, 0]))  # each whole word once per occurrence
    assert not counts[1].any()  # no listed word in it
    assert counts[2][1] > 0 and lexicon.summary()["words"] == 9


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Dictionary: [开心]\n", "no Dictionary of category -> words"),
        ("Dictionary:\n  乐: 开心\n", "category '乐' does not list words"),
        ("Dictionary:\n  乐: []\n", "the categories list no words"),
        ("Dictionary: {乐: [\n", "not YAML"),
    ],
)
def test_a_file_that_is_not_an_emotion_lexicon_is_refused_with_the_reason(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LexiconError, match=why) as refused:
        EmotionLexicon.load(path)
    assert refused.value.code == "lexicon_invalid"


def test_the_emotion_reader_learns_the_lexicon_and_keeps_it_in_the_artefact(
    lexicon: EmotionLexicon, tmp_path: Path
) -> None:
    """Words no training text has move the reading towards the category the lexicon files them under; the
    artefact carries the lexicon (workers never read the file) and its version says which lexicon it learned."""
    plain = HarmClassifier.fit(HARM_TEXTS, HARM_LABELS, KB, source="unit").learn_feelings(KB, EMOTION_PAIRS, [])
    read = HarmClassifier.fit(HARM_TEXTS, HARM_LABELS, KB, source="unit").learn_feelings(KB, EMOTION_PAIRS, [], lexicon)
    assert read.emotion is not None and plain.emotion is not None and read.version != plain.version
    assert read.trained["emotion"]["lexicon"]["sha256"] == lexicon.sha256
    assert plain.trained["emotion"]["lexicon"] is None
    texts = ["凄凉悲戚"]
    sad = [c.emotion.read(texts, [[]], None, words_of(KB, texts))[0].probabilities for c in (plain, read)]
    assert sad[1][Emotion.SADNESS] > sad[0][Emotion.SADNESS] + 0.05
    loaded = HarmClassifier.load(read.save(tmp_path / "m.joblib"))
    assert loaded.emotion is not None and loaded.emotion.labels.lexicon == lexicon
    assert loaded.predict(texts, KB)[0].feeling == read.predict(texts, KB)[0].feeling


def test_the_lexicon_fetcher_takes_only_the_pinned_release() -> None:
    """`make model` fetches the lexicon from PyPI (tools/fetch_lexicon.py): bytes whose hash is not the pinned
    one are refused, never written. (The download itself needs the package index, which tests do not reach.)"""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "fetch_lexicon", Path(__file__).parents[2] / "tools" / "fetch_lexicon.py"
    )
    assert spec is not None and spec.loader is not None
    fetcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetcher)
    fetcher._check("lexicon", LEXICON_YAML.encode(), hashlib.sha256(LEXICON_YAML.encode()).hexdigest())
    with pytest.raises(SystemExit, match="not the pinned release"):
        fetcher._check(fetcher.MEMBER, LEXICON_YAML.encode(), fetcher.FILE_SHA256)


def test_the_shipped_emotion_lexicon_is_used_where_make_model_put_it(tmp_path: Path) -> None:
    from memeguard.settings import SHIPPED_EMOTION_LEXICON, Settings

    assert Settings(data_dir=tmp_path).effective_emotion_lexicon is None
    (tmp_path / SHIPPED_EMOTION_LEXICON).parent.mkdir(parents=True)
    (tmp_path / SHIPPED_EMOTION_LEXICON).write_text(LEXICON_YAML, encoding="utf-8")
    assert Settings(data_dir=tmp_path).effective_emotion_lexicon == tmp_path / SHIPPED_EMOTION_LEXICON
    given = tmp_path / "other.yaml"
    assert Settings(data_dir=tmp_path, emotion_lexicon=given).effective_emotion_lexicon == given


@needs_clue
@pytest.mark.slow
def test_train_teaches_the_emotion_reader_the_lexicon_it_is_given(tmp_path: Path) -> None:
    """`memeguard train` reads MEMEGUARD_EMOTION_LEXICON (else the one `make model` fetched) into the emotion
    reader and says so."""
    import subprocess
    import sys

    data, lexicon = tmp_path / "harm.jsonl", tmp_path / "lexicon.yaml"
    rows = [{"text": t, "harm_type": h} for t, h in zip(HARM_TEXTS, HARM_LABELS, strict=True)]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    lexicon.write_text(LEXICON_YAML, encoding="utf-8")
    env = {
        **os.environ,
        "MEMEGUARD_DATA_DIR": str(tmp_path),
        "MEMEGUARD_DATASETS_DIR": str(DATASETS),
        "MEMEGUARD_EMOTION_LEXICON": str(lexicon),
    }
    command = [
        "train",
        "--data",
        str(data),
        "--source",
        "clue-emotion",
        "--no-encoder",
        "--out",
        str(tmp_path / "m.joblib"),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "composition.cli", *command], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "emotion lexicon: 测试情感词典 (9 words)" in result.stdout
    trained = HarmClassifier.load(tmp_path / "m.joblib").trained["emotion"]
    assert trained["lexicon"]["sha256"] == EmotionLexicon.load(lexicon).sha256 and trained["items"] > 3000


def test_jsonl_items_may_give_acceptable_emotions_and_intents(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(row, ensure_ascii=False)
            for row in [
                {"text": "笑死", "label": 0, "emotion": ["amusement", "joy"], "intent": "humor"},
                {"text": "好难过", "label": 0, "emotion": "sadness"},
            ]
        ),
        encoding="utf-8",
    )
    first, second = load_jsonl(path)
    assert first.emotions == ("amusement", "joy") and first.intents == ("humor",) and first.intent == "humor"
    assert second.emotions == ("sadness",) and second.intents == ()
    path.write_text(json.dumps({"text": "x", "label": 0, "emotion": "happy"}), encoding="utf-8")
    with pytest.raises(DataError, match="emotion 'happy' is not one of"):
        load_jsonl(path)


@needs_clue
def test_clue_emotion_trains_the_emotion_reader_only_and_its_test_split_is_held_out() -> None:
    items = load_clue_emotion(CLUE / "valid.txt")
    assert len(items) > 3000 and all(i.harm_type is None and i.emotion for i in items)
    with pytest.raises(DataError, match="held-out"):
        Source.parse(f"clue-emotion={CLUE / 'test.txt'}", DATASETS).load()
    from worker.training import TrainingSet

    training = TrainingSet.of([Source.parse("clue-emotion", DATASETS).load()])
    assert training.items == [] and len(training.emotions) == len(items)


@needs_clue
@pytest.mark.slow
def test_eval_clue_emotion_scores_the_reader_beside_the_baseline() -> None:
    from worker.emotion_eval import EmotionEvalConfig, run

    report = run(EmotionEvalConfig(CLUE, "train", limit=300, train_limit=1500, encoder=False))
    assert report["n"] == 300 and report["trained_on"] == 1500 and report["split"] == "train"
    assert report["accuracy"] > 0.35 and report["baseline"]["accuracy"] > 0.3  # seven classes: chance is ~0.35
    assert abs(report["delta"]["macro_f1"] - (report["macro_f1"] - report["baseline"]["macro_f1"])) < 1e-9
    tier = report["tier"]
    assert 0.0 <= tier["neutral"] < 0.6 and 0.0 < tier["agreement"] <= 1.0
    assert abs(sum(tier["decided_by"].values()) - 1.0) < 1e-9


def test_the_fields_own_confidences_are_stored_with_the_verdict(
    analyzer: EmbeddedAnalyzer,
    pg_sessions,  # type: ignore[no-untyped-def]
    blobs,
) -> None:
    from jobs import store
    from memeguard.queue import InlineQueue
    from policies import load_policy
    from producer.service import Producer
    from producer.validation import Limits
    from worker.pipeline import Deps, process_job
    from worker.samples import render_meme

    job_id = (
        Producer(pg_sessions, blobs, InlineQueue(lambda _: None), Limits(1_000_000, 4_000_000, 4, 200, 512))
        .submit(render_meme("今天真快乐"), "feel-1", tenant="acme")
        .job_id
    )
    reads_the_meme = EmbeddedAnalyzer(KB, lambda _frames: "今天真快乐", analyzer.classifier)  # the OCR's reading
    deps = Deps(
        sessions=pg_sessions, blobs=blobs, analyzer=reads_the_meme, policy=load_policy(), max_attempts=3, max_frames=4
    )
    assert process_job(job_id, deps).status == "done"
    with pg_sessions() as session:
        verdict = store.verdict_of(session, job_id)
    assert verdict is not None and verdict.emotion is Emotion.JOY
    assert verdict.emotion_confidence is not None and 0 < verdict.emotion_confidence <= 1
    assert verdict.intent_confidence == verdict.emotion_confidence


def test_an_entry_with_a_neutral_intent_leaves_the_intent_to_the_emotion(analyzer: EmbeddedAnalyzer) -> None:
    verdict = analyzer.read_text("好开心").verdict  # 开心: the knowledge base names joy, and no intent
    assert verdict.emotion is Emotion.JOY and verdict.intent is Intent.HUMOR
    assert "由情绪推断" in verdict.explanation


@pytest.mark.integration  # runs the command as a process of its own
def test_eval_clue_emotion_refuses_what_it_cannot_score(tmp_path: Path) -> None:
    import subprocess
    import sys

    def cli(*args: str, datasets: Path, lexicon: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MEMEGUARD_DATASETS_DIR": str(datasets), "MEMEGUARD_DATA_DIR": str(datasets / "data")}
        env.update({"MEMEGUARD_EMOTION_LEXICON": str(lexicon)} if lexicon else {})
        return subprocess.run(
            [sys.executable, "-m", "composition.cli", "eval", "clue-emotion", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )

    missing = cli("--no-encoder", datasets=tmp_path)
    assert missing.returncode == 2 and "clue_emotion not found at" in missing.stderr
    (tmp_path / "clue_emotion").mkdir()
    (tmp_path / "clue_emotion" / "valid.txt").write_text('{"content": "好开心", "label": "glee"}\n', encoding="utf-8")
    bad = cli("--split", "train", "--no-encoder", datasets=tmp_path)
    assert bad.returncode == 2 and "valid.txt:1: unknown emotion 'glee'" in bad.stderr
    (tmp_path / "clue_emotion" / "valid.txt").write_text(
        '{"content": "好开心", "label": "happiness"}\n', encoding="utf-8"
    )
    wrong = cli("--split", "dev", "--no-encoder", datasets=tmp_path)
    assert wrong.returncode == 2 and "unknown split 'dev'" in wrong.stderr
    (tmp_path / "not-a-lexicon.yaml").write_text("Name: 空\nDictionary: [开心]\n", encoding="utf-8")
    unreadable = cli("--split", "train", "--no-encoder", datasets=tmp_path, lexicon=tmp_path / "not-a-lexicon.yaml")
    assert unreadable.returncode == 2 and "refused: emotion lexicon" in unreadable.stderr
    assert "no Dictionary of category -> words (lexicon_invalid)" in unreadable.stderr
    missing_file = cli("--split", "train", "--no-encoder", datasets=tmp_path, lexicon=tmp_path / "nowhere.yaml")
    assert missing_file.returncode == 2 and "(lexicon_unreadable)" in missing_file.stderr
