"""Negation, contrast and intensity, read off real knowledge-base matches."""

from __future__ import annotations

import pytest

from worker.analyzers.embedded import EmbeddedAnalyzer
from worker.knowledge import KnowledgeBase
from worker.match_reading import CONCEDED, COUNTERED, MEANT, NEGATED, STRONGER, WEAKER, read

KB = KnowledgeBase.bundled()


def weight_of(text: str, entry_id: str) -> tuple[float, tuple[str, ...]]:
    match = next(m for m in read(KB.match(text), text) if m.entry.id == entry_id)
    return match.weight, match.why


def base(entry_id: str) -> float:
    return next(e.weight for e in KB.entries if e.id == entry_id)


def test_plain_mention_keeps_the_entry_weight() -> None:
    assert weight_of("你这个废物", "insult.laji") == (base("insult.laji"), ())


@pytest.mark.parametrize("text", ["你不是废物", "他并不是废物", "我没有想死"])
def test_a_negator_before_the_phrase_denies_it(text: str) -> None:
    entry_id = "dispirited.buxianghuo" if "想死" in text else "insult.laji"
    weight, why = weight_of(text, entry_id)
    assert weight == pytest.approx(base(entry_id) * NEGATED)
    assert "否定" in why[0]


def test_a_question_is_not_a_negation() -> None:
    assert weight_of("你是不是废物", "insult.laji") == (base("insult.laji"), ())


def test_before_but_is_conceded_after_but_is_meant() -> None:
    conceded, why = weight_of("虽然他是个废物，但是我爱他", "insult.laji")
    assert conceded == pytest.approx(base("insult.laji") * CONCEDED) and "让步" in why[0]
    meant, why = weight_of("他人挺好，其实就是个废物", "insult.laji")
    assert meant == pytest.approx(base("insult.laji") * MEANT) and "真实态度" in why[0]


def test_a_pattern_that_contains_the_marker_is_its_own_reading() -> None:
    entry = "sarcasm.nishuodedui-danshi"
    assert weight_of("你说得对，但是原神是一款游戏", entry) == (base(entry), ())


@pytest.mark.parametrize(("text", "factor"), [("太垃圾东西了", STRONGER), ("有点废物", WEAKER), ("废物死了", STRONGER)])
def test_degree_words_change_the_strength(text: str, factor: float) -> None:
    weight, why = weight_of(text, "insult.laji")
    assert weight == pytest.approx(min(1.0, base("insult.laji") * factor)) and "程度词" in why[0]


def test_repeated_exclamation_marks_strengthen_harmful_entries_only() -> None:
    weight, why = weight_of("你这个废物！！！", "insult.laji")
    assert weight == pytest.approx(min(1.0, base("insult.laji") * STRONGER)) and "感叹" in why[-1]
    assert weight_of("笑死！！！", "slang.xiaosi") == (base("slang.xiaosi"), ())


def test_the_verdict_follows_and_cites_the_reading(embedded_analyzer: EmbeddedAnalyzer) -> None:
    plain = embedded_analyzer.read_text("你这个废物").verdict
    denied = embedded_analyzer.read_text("你不是废物").verdict
    assert denied.confidence < plain.confidence
    assert "被「不是」否定" in denied.explanation
    loud = embedded_analyzer.read_text("你这个废物！！！").verdict
    assert loud.confidence > plain.confidence and "加强" in loud.explanation


def test_homophone_hits_are_cited_as_such(embedded_analyzer: EmbeddedAnalyzer) -> None:
    verdict = embedded_analyzer.read_text("你马死了").verdict
    assert verdict.harm_type.value != "none"
    assert "谐音匹配" in verdict.explanation
    assert any("(homophone)" in e for s in verdict.signals if s.source == "kb" for e in s.evidence)


@pytest.mark.parametrize("text", ["地域黑要不得，哪里都有好人坏人", "别再地域黑了，没意思", "不是所有河南人都偷井盖"])
def test_counter_speech_names_a_group_slur_without_meaning_it(text: str) -> None:
    matches = read(KB.match(text), text)
    assert any(m.entry.intent is not None and m.entry.intent.value == "counter_speech" for m in matches)
    named = [m for m in matches if m.entry.harm is not None and m.entry.harm.value == "targeted_harm"]
    assert named and all(m.denied and not m.attacking and "反歧视" in m.why[-1] for m in named)
    assert all(m.weight <= m.entry.weight * COUNTERED * STRONGER + 1e-9 for m in named)


def test_counter_speech_does_not_excuse_a_personal_insult_beside_it() -> None:
    text = "你这个傻逼，地域黑要不得"
    insult = next(m for m in read(KB.match(text), text) if m.entry.id == "insult.sb")
    assert not insult.denied and insult.attacking


def test_the_same_slur_without_counter_speech_is_an_attack() -> None:
    assert all(m.attacking for m in read(KB.match("河南人都是小偷"), "河南人都是小偷") if m.entry.harm)


def test_a_negated_insult_is_denied() -> None:
    (match,) = [m for m in read(KB.match("你不是废物"), "你不是废物") if m.entry.id == "insult.laji"]
    assert match.denied and not match.attacking


def test_groups_a_text_names() -> None:
    from worker.match_reading import mentioned_groups

    assert mentioned_groups("说女生都不会开车就是刻板印象，河南人也不都那样，女生真的") == ["女生", "河南人"]
    assert mentioned_groups("今天天气真好") == []
