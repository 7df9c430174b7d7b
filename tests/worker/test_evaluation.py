"""The evaluation harness on the real ToxiCN MM files in ../shared (small seeded samples; the full runs are
documented in README). Tests use the train split only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from worker.datasets import LabelledItem
from worker.evaluation import (
    NO_INTENT_BASELINE,
    EvalConfig,
    Prediction,
    baseline_intents,
    expected_calibration_error,
    label_agreement,
    outside_charset,
    run,
    score,
    stated,
)
from worker.knowledge import KnowledgeBase

pytestmark = pytest.mark.slow  # train and evaluate on the real datasets: minutes, left out of `make unit`

DATASETS = Path(os.environ.get("MEMEGUARD_DATASETS_DIR", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
TOXICN = DATASETS / "toxicn_mm"
TOXICN_TEXT = DATASETS / "toxicn_text"
C_HARMKB = DATASETS / "c_harmkb" / "C-harmKB.json"


def _cli(args: list[str], env: dict[str, str], timeout: float | None = 300) -> subprocess.CompletedProcess[str]:
    """``memeguard ARGS`` in a child process with ``env``; its exit code and output, never raising."""
    return subprocess.run(
        [sys.executable, "-m", "composition.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=timeout,
    )


needs_data = pytest.mark.skipif(
    not (TOXICN.exists() and TOXICN_TEXT.exists()), reason=f"ToxiCN MM / ToxiCN text not present under {DATASETS}"
)


def test_score_and_ece_on_known_values() -> None:
    report = score([0, 0, 1, 3], [0, 1, 1, 3], [0.9, 0.6, 0.8, 0.7])
    assert report["n"] == 4 and report["accuracy"] == 0.75
    assert report["binary_macro_f1"] == pytest.approx(0.7333, abs=1e-4)
    assert report["confusion"][0][:2] == [1, 1]
    assert expected_calibration_error([1, 1], [1.0, 1.0]) == 0.0
    assert expected_calibration_error([0, 0], [0.9, 0.9]) == pytest.approx(0.9)


def test_a_character_the_ocr_cannot_output_is_outside_its_charset() -> None:
    charset = frozenset("蝻人男拍的")
    assert outside_charset("蝻人拍的", charset) is False
    assert outside_charset("龜男", charset) is True  # 龜 is not in the set: the OCR cannot read it back
    assert outside_charset("男 人\ufe0f", charset) is False  # spaces and a variation selector are not shown


def test_intent_agreement_is_reported_beside_the_in_run_baseline_per_group() -> None:
    def item(text: str, intent: str = "", group: str = "") -> LabelledItem:
        return LabelledItem(
            text, 1 if "attack" in intent else 0, intent=intent, group=group, intents=(intent,) * bool(intent)
        )

    train = [
        *[item(t, "explicit_attack") for t in ("你个傻逼", "滚你妈的", "傻逼东西")] * 4,
        *[item(t, "counter_speech") for t in ("地域黑要不得", "这是刻板印象", "不要歧视")] * 4,
        *[item(t) for t in ("早上好", "今天吃什么", "天气不错")] * 4,
    ]
    evaluation = [
        item("傻逼", "explicit_attack", "explicit"),
        item("歧视要不得", "counter_speech", "reporting"),
        item("早"),
    ]
    baseline = baseline_intents(train, evaluation)
    assert len(baseline) == 3 and set(baseline) <= {"explicit_attack", "counter_speech", "other"}
    assert baseline[:2] == ["explicit_attack", "counter_speech"]  # the char n-grams learn these two
    assert baseline_intents(train, [item("早")]) == ["other"]  # nothing to score: no baseline is trained
    # training data without intents: no baseline, said so — not one that answers "other" and scores 0
    unlabelled = [item(t) for t in ("你个傻逼", "地域黑要不得", "早上好")]
    assert baseline_intents(unlabelled, evaluation) is None
    without = label_agreement(evaluation, [Prediction(1, 0.9, 1.0, "block", "sarcasm")] * 3, None)["intent"]
    assert without["baseline"] is None and without["baseline_unavailable"] == NO_INTENT_BASELINE
    assert without["n"] == 2 and without["agreement"] == 0.0  # the tier's own figures are still given
    read = [Prediction(1, 0.9, 1.0, "block", "sarcasm"), Prediction(0, 0.9, 1.0, "allow", "counter_speech")]
    report = label_agreement(evaluation, [*read, Prediction(0, 0.9, 1.0, "allow", "neutral")], baseline)["intent"]
    assert report["n"] == 2 and report["agreement"] == 0.5 and report["read_as"] == {"sarcasm": 1, "counter_speech": 1}
    assert report["groups"]["explicit"] == {"n": 1, "agreement": 0.0, "neutral": 0.0, "read_as": {"sarcasm": 1}}
    assert report["baseline"]["agreement"] == 1.0 and set(report["baseline"]["groups"]) == {"explicit", "reporting"}
    # the unlabelled item: what it was read as among the labels the others give (the tier: neutral, neither)
    assert report["unlabelled_read_as"] == {"counter_speech": 0.0, "explicit_attack": 0.0}
    assert report["baseline"]["unlabelled_read_as"] == {
        "counter_speech": float(baseline[2] == "counter_speech"),
        "explicit_attack": float(baseline[2] == "explicit_attack"),
    }
    assert "baseline" not in label_agreement(evaluation, [*read, read[1]])["intent"]  # none given, none shown
    assert label_agreement(evaluation, [*read, read[1]])["intent"]["unlabelled_read_as"]["counter_speech"] == 1.0


def test_what_the_verdicts_state_is_reported_without_emotion_or_intent_labels() -> None:
    truth = [
        LabelledItem(text, harm, group=group)
        for text, harm, group in (
            ("你个傻逼", 1, "insult"),
            ("他们都一样", 1, ""),
            ("早上好", 0, "insult"),
            ("哈", 0, ""),
        )
    ]
    read = [
        Prediction(3, 0.9, 1.0, "block", "explicit_attack", emotion="contempt"),
        Prediction(0, 0.6, 1.0, "allow", "venting", emotion="neutral"),
        Prediction(0, 0.9, 1.0, "allow", "neutral", emotion="joy"),
        Prediction(0, 0.8, 1.0, "allow", "sarcasm", emotion="neutral"),
    ]
    report = stated(truth, read)
    assert [report[k]["n"] for k in ("all", "harmful", "harmless")] == [4, 2, 2]
    assert report["all"]["emotion"] == {"neutral": 0.5, "read_as": {"neutral": 2, "contempt": 1, "joy": 1}}
    assert report["harmful"]["intent"]["hostile"] == 0.5 and report["harmful"]["intent"]["neutral"] == 0.0
    assert report["harmless"]["intent"] == {"neutral": 0.5, "hostile": 0.5, "read_as": {"neutral": 1, "sarcasm": 1}}
    assert report["groups"]["insult"]["intent"]["read_as"] == {"explicit_attack": 1, "neutral": 1}
    assert set(report["groups"]) == {"insult"}  # items without a group are in no group's slice
    assert set(stated(truth[3:], read[3:])) == {"all", "harmless"}  # no harmful item, no group: no such slice


@needs_data
def test_no_render_run_reports_memeguard_beside_the_baseline() -> None:
    report = run(EvalConfig(TOXICN, "train", render=False, limit=300, encoder=False, also_train=()))
    assert report["n"] == 300 and report["split"] == "train" and report["encoder"] is None
    assert report["trained_on"] == ["toxicn-mm"] and report["policy"] == "default@3"
    for key in ("binary_macro_f1", "type_macro_f1", "accuracy", "ece"):
        assert 0.0 <= report[key] <= 1.0
    assert set(report["baseline"]) >= {"binary_macro_f1", "type_macro_f1", "accuracy"}
    assert report["delta"]["type_macro_f1"] == pytest.approx(
        report["type_macro_f1"] - report["baseline"]["type_macro_f1"]
    )
    assert report["binary_macro_f1"] > 0.6  # far above chance even on a small sample


@needs_data
def test_sentence_encoder_run_trains_on_a_seeded_sample() -> None:
    from worker.encoder import shared_encoder

    config = EvalConfig(TOXICN, "train", render=False, limit=60, train_limit=400, also_train=())
    with_encoder, without = run(config), run(replace(config, encoder=False))
    assert with_encoder["encoder"] == shared_encoder().id and without["encoder"] is None
    assert with_encoder["n"] == without["n"] == 60
    assert with_encoder["classifier"] != without["classifier"]  # the encoder is part of the artefact's version
    assert with_encoder["baseline"]["accuracy"] == without["baseline"]["accuracy"]  # same items, same baseline


@needs_data
def test_an_evaluation_run_trains_the_emotion_reader_with_the_lexicon_as_train_does(tmp_path: Path) -> None:
    from worker.emotion_lexicon import EmotionLexicon

    path = tmp_path / "lexicon.yaml"
    path.write_text("Name: 小词典\nDictionary:\n  乐: [开心, 快乐]\n  哀: [伤心, 难过]\n", encoding="utf-8")
    lexicon = EmotionLexicon.load(path)
    config = EvalConfig(
        TOXICN, "train", render=False, limit=30, train_limit=300, encoder=False, also_train=("clue-emotion",)
    )
    read, plain = run(replace(config, emotion_lexicon=lexicon)), run(config)
    assert read["emotion_lexicon"]["sha256"] == lexicon.sha256 and plain["emotion_lexicon"] is None
    assert read["classifier"] != plain["classifier"]  # the lexicon the reader learned is in the version


@needs_data
def test_rendered_run_reads_captions_back_with_ocr(embedded_analyzer) -> None:  # type: ignore[no-untyped-def]
    report = run(
        EvalConfig(TOXICN, "train", render=True, limit=12, train_limit=400, also_train=()), ocr=embedded_analyzer._ocr
    )
    assert report["n"] == 12 and report["render"] is True and report["p95_ms"] > 0
    assert 0.0 <= report["render_agreement"] <= 1.0  # rendered runs compare with the text-only verdicts


@needs_data
def test_cli_json_has_the_documented_keys(tmp_path: Path) -> None:
    """With --only no emotion reader is trained, so a lexicon file that is not one is never read (no refusal)."""
    (tmp_path / "not-a-lexicon.yaml").write_text("Name: 空\n", encoding="utf-8")
    env = {
        **os.environ,
        "MEMEGUARD_DATASETS_DIR": str(DATASETS),
        "MEMEGUARD_DATA_DIR": str(tmp_path),
        "MEMEGUARD_EMOTION_LEXICON": str(tmp_path / "not-a-lexicon.yaml"),
    }
    result = _cli(
        [
            "eval",
            "toxicn",
            "--split",
            "train",
            "--no-render",
            "--limit",
            "100",
            "--train-limit",
            "500",
            "--only",
            "--json",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert {"binary_macro_f1", "type_macro_f1", "accuracy", "n"} <= set(report)
    assert report["n"] == 100 and report["encoder"].startswith("multilingual-e5-small")
    assert report["emotion_lexicon"] is None


@needs_data
def test_train_command_writes_an_artefact_the_analyzer_loads(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    rows = [{"text": t, "harm_type": h} for t, h in [("早上好", 0), ("你个傻逼", 3), ("躺平了", 4)] * 10]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    env = {**os.environ, "MEMEGUARD_DATA_DIR": str(tmp_path)}
    result = _cli(["train", "--data", str(data), "--out", str(tmp_path / "m.joblib")], env, timeout=None)
    assert result.returncode == 0 and "trained tfidf-lr-" in result.stdout, result.stderr[-2000:]
    from memeguard.settings import Settings
    from worker.analyzers.embedded import EmbeddedAnalyzer

    analyzer = EmbeddedAnalyzer.default(Settings(classifier_path=tmp_path / "m.joblib"))
    assert analyzer.classifier is not None and analyzer.classifier.version in analyzer.version
    assert analyzer.classifier.semantic is not None  # the sentence encoder is on by default
    assert analyzer.read_text("你个傻逼").verdict.harm_type.value == "general_offense"
    plain = _cli(["train", "--data", str(data), "--no-encoder", "--out", str(tmp_path / "p.joblib")], env, timeout=None)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert json.loads((tmp_path / "p.json").read_text())["encoder"] == "none"


@pytest.mark.skipif(not C_HARMKB.exists(), reason=f"C-HarmKB not present at {C_HARMKB}")
def test_c_harmkb_loads_as_an_external_knowledge_base() -> None:
    external = KnowledgeBase.load_any(C_HARMKB)
    assert 2000 < len(external.entries) <= 2870  # single-character terms are skipped
    assert all(e.harm is not None and e.id.startswith("c-harmkb.") for e in external.entries)
    merged = KnowledgeBase.bundled().merged(external)
    assert len(merged.entries) == len(KnowledgeBase.bundled().entries) + len(external.entries)
    sample = external.entries[0]
    assert sample.id in {m.entry.id for m in merged.match(f"前缀{sample.phrases[0]}后缀")}


@needs_data
def test_cross_validation_scores_out_of_fold_predictions_once() -> None:
    from worker.evaluation import split_items

    folds = split_items(EvalConfig(TOXICN, "train", render=False, folds=3))
    assert len(folds) == 3
    held_out = [item for _, evaluation in folds for item in evaluation]
    assert len(held_out) == 9600 and len({id(i) for i in held_out}) == 9600  # every item held out once
    for train, evaluation in folds:
        assert not {id(i) for i in train} & {id(i) for i in evaluation}
    report = run(
        EvalConfig(TOXICN, "train", render=False, folds=3, limit=150, encoder=False, train_limit=1500, also_train=())
    )
    assert report["folds"] == 3 and report["n"] == 150 and len(report["classifier"]) == 3


@needs_data
def test_post_context_is_the_datasets_image_description_and_can_be_left_out() -> None:
    from worker.evaluation import _context, split_items

    config = EvalConfig(TOXICN, "train", render=False, limit=50)
    item = split_items(config)[0][1][0]
    assert item.context and _context(item, config) == item.context
    assert _context(item, EvalConfig(TOXICN, "train", render=False, context=False)) == ""
    report = run(
        EvalConfig(
            TOXICN, "train", render=False, limit=100, context=False, encoder=False, train_limit=1500, also_train=()
        )
    )
    assert report["context"] is False and report["n"] == 100


@needs_data
def test_the_datasets_caption_reading_reaches_the_context_only_when_asked() -> None:
    from worker.evaluation import _context, split_items

    item = split_items(EvalConfig(TOXICN, "train", render=False, limit=50))[0][1][0]
    assert item.reading and item.reading not in _context(item, EvalConfig(TOXICN, "train"))
    assert _context(item, EvalConfig(TOXICN, "train", caption_reading=True)) == f"{item.context} {item.reading}"
    assert _context(item, EvalConfig(TOXICN, "train", context=False, caption_reading=True)) == item.reading


@needs_data
def test_toxicn_text_run_slices_by_expression_and_target_with_the_policys_actions() -> None:
    report = run(
        EvalConfig(
            TOXICN_TEXT, "train", render=False, limit=400, encoder=False, train_limit=2000, dataset="toxicn-text"
        )
    )
    assert report["dataset"] == "toxicn-text" and report["n"] == 400
    assert report["trained_on"] == ["toxicn-text", "toxicn-mm", "clue-emotion"]  # as shipped: the other sources too
    assert report["max_false_alarm"] == 0.10 and 0.3 <= report["threshold"][0] <= 0.9
    assert set(report["groups"]) == {"non_toxic", "offensive", "explicit", "implicit", "reporting"}
    assert set(report["targets"]) <= {"lgbtq", "region", "sexism", "racism", "others"} and report["targets"]
    for row in [*report["groups"].values(), *report["targets"].values()]:
        assert row["n"] > 0 and 0.0 <= row["flagged"] <= 1.0 and 0.0 <= row["counter_speech"] <= 1.0
        assert sum(row["actions"].values()) == pytest.approx(1.0) and set(row["actions"]) == {
            "allow",
            "throttle",
            "tag",
            "block",
        }
    assert report["groups"]["non_toxic"]["flagged"] < report["groups"]["explicit"]["flagged"]
    # the intent the expression gives (hate speech's attack style, reporting's counter-speech) is scored, with the
    # baseline trained on the same items beside it
    intent = report["intent"]
    assert set(intent["groups"]) <= {"explicit", "implicit", "reporting"} and intent["groups"]
    assert intent["n"] == sum(g["n"] for g in intent["groups"].values())
    assert (
        intent["groups"]["reporting"]["agreement"]
        == intent["groups"]["reporting"]["read_as"].get("counter_speech", 0) / intent["groups"]["reporting"]["n"]
    )
    assert 0.0 <= intent["baseline"]["agreement"] <= 1.0 and intent["baseline"]["n"] == intent["n"]
    # and what the comments without an intent (non-toxic, offensive) were read as, among those intents
    assert set(intent["unlabelled_read_as"]) == set(intent["baseline"]["unlabelled_read_as"])
    assert set(intent["unlabelled_read_as"]) <= {"explicit_attack", "implicit_attack", "counter_speech"}
    # reporting counts as harmless: the binary truth of a reporting item is "not harmful"
    assert report["baseline"]["binary_macro_f1"] > 0.5 and report["binary_macro_f1"] > 0.5


@needs_data
def test_a_comment_rendered_as_a_meme_reads_as_its_text() -> None:
    """OCR returns other punctuation and line breaks than the clean text: the verdicts must not change."""
    report = run(
        EvalConfig(
            TOXICN_TEXT,
            "train",
            render=True,
            limit=40,
            encoder=False,
            train_limit=1500,
            dataset="toxicn-text",
            also_train=(),
        )
    )
    assert report["render_agreement"] >= 0.95, report["render_agreement"]
    # the whole caption (emoji the sample font cannot draw included) is compared as well
    assert 0.9 <= report["render_agreement_caption"] <= 1.0, report["render_agreement_caption"]
    # the items that differ are named, so a platform can look at them
    assert len(report["render_disagreements"]) == round((1 - report["render_agreement"]) * report["n"])
    # and the agreement is given apart for the items the OCR's character set can spell
    assert 0 <= report["render_outside_charset"] < report["n"]
    assert 0.95 <= report["render_agreement_in_charset"] <= 1.0


@needs_data
def test_eval_jsonl_scores_a_platforms_own_items_with_the_configured_classifier(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MEMEGUARD_DATASETS_DIR": str(DATASETS),
        "MEMEGUARD_DATA_DIR": str(tmp_path),
        "MEMEGUARD_KB_EXTERNAL": "[]",
    }
    data = tmp_path / "train.jsonl"
    rows = [
        {"text": t, "harm_type": h}
        for t, h in [("早上好", 0), ("你个傻逼", 3), ("躺平了", 4), ("今天吃什么", 0), ("滚你妈的", 3)] * 8
    ]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    trained = _cli(
        ["train", "--source", f"jsonl={data}", "--no-encoder", "--out", str(tmp_path / "models" / "current.joblib")],
        env,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    items = tmp_path / "platform.jsonl"
    lines = [
        {
            "id": "a",
            "text": "你这个傻逼",
            "label": 1,
            "group": "insult",
            "emotion": ["anger", "contempt"],
            "intent": "explicit_attack",
        },
        {"id": "b", "text": "早上好呀", "label": 0, "group": "everyday", "emotion": "joy"},
        {"id": "c", "text": "地域黑要不得，哪里都有好人坏人", "label": 0, "group": "counter"},
        {"id": "d", "text": "今天吃什么呢", "post_text": "午饭", "scene": "评论", "label": 0, "group": "everyday"},
    ]
    items.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in lines), encoding="utf-8")
    result = _cli(["eval", "jsonl", str(items), "--json"], env)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["n"] == 4 and {"binary_macro_f1", "accuracy", "ece", "baseline", "groups", "classifier"} <= set(
        report
    )
    assert "type_macro_f1" not in report  # no item gave a harm type
    assert report["baseline_trained_on"] == ["jsonl"] and report["policy"] == "default@3"
    assert set(report["groups"]) == {"insult", "everyday", "counter"} and report["groups"]["everyday"]["n"] == 2
    assert report["groups"]["counter"]["counter_speech"] == 1.0  # the knowledge base's counter-speech cues
    emotion, intent = report["emotion"], report["intent"]  # only the items that give one are scored
    assert emotion["n"] == 2 and set(emotion["groups"]) == {"insult", "everyday"} and 0 <= emotion["neutral"] <= 1
    assert intent["n"] == 1 and intent["agreement"] == 1.0 and intent["read_as"] == {"explicit_attack": 1}
    # its training items give no intent: no baseline is learned, and the report says so rather than score one
    assert intent["baseline"] is None and intent["baseline_unavailable"] == NO_INTENT_BASELINE
    shown = _cli(["eval", "jsonl", str(items)], env)  # the table a person reads says the same
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f"intent: agreement 1.000, no baseline ({NO_INTENT_BASELINE}), neutral 0.000 (n 1)" in shown.stdout
    assert "(baseline)" not in shown.stdout
    said = report["stated"]  # every item, labelled for emotion / intent or not
    assert [said[k]["n"] for k in ("all", "harmful", "harmless")] == [4, 1, 3]
    assert {g: row["n"] for g, row in said["groups"].items()} == {"insult": 1, "everyday": 2, "counter": 1}
    assert said["harmful"]["intent"] == {"neutral": 0.0, "hostile": 1.0, "read_as": {"explicit_attack": 1}}
    assert "stated (harmful, n 1): emotion neutral" in shown.stdout and "hostile 1.000" in shown.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "label": 3}\n', encoding="utf-8")
    refused = _cli(["eval", "jsonl", str(bad)], env)
    assert refused.returncode == 2 and "bad.jsonl:1: label must be 1" in refused.stderr


@needs_data
def test_training_sources_refuse_held_out_test_splits(tmp_path: Path) -> None:
    env = {**os.environ, "MEMEGUARD_DATASETS_DIR": str(DATASETS), "MEMEGUARD_DATA_DIR": str(tmp_path)}
    for spec in (f"toxicn-text={TOXICN_TEXT / 'test.json'}", f"toxicn-mm={TOXICN / 'test_2.0.json'}"):
        result = _cli(["train", "--source", spec, "--no-encoder"], env, timeout=120)
        assert result.returncode == 2 and "held-out test split" in result.stderr
