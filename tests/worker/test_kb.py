from __future__ import annotations

from pathlib import Path

import pytest

from worker.kb import KnowledgeBase, initials, joined, normalize, syllables

KB = KnowledgeBase.bundled()


def test_bundled_knowledge_base_has_at_least_50_entries_with_notes() -> None:
    assert len(KB.entries) >= 50
    assert all(entry.note and (entry.phrases or entry.patterns) for entry in KB.entries)


@pytest.mark.parametrize("entry", KB.entries, ids=lambda e: e.id)
def test_every_example_matches_its_entry(entry) -> None:  # type: ignore[no-untyped-def]
    assert entry.examples, f"{entry.id} has no examples"
    for example in entry.examples:
        assert entry.id in {m.entry.id for m in KB.match(example)}, example


@pytest.mark.parametrize(("raw", "expected"), [
    ("你说得对，但是", "你说得对但是"),           # punctuation
    ("你 说 得 对 但 是", "你说得对但是"),         # inserted spaces (OCR noise)
    ("ＳＢ", "sb"),                               # full-width
    ("你说得对…但是！", "你说得对但是"),
    ("手动🐶", "手动🐶"),                          # meaningful emoji stay
    ("我媽說你這個垃圾", "我妈说你这个垃圾"),      # traditional -> simplified
])
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_matching_survives_noise() -> None:
    ids = {m.entry.id for m in KB.match("你  说得对，但是……原神")}
    assert "sarcasm.nishuodedui-danshi" in ids
    assert "insult.sb" in {m.entry.id for m in KB.match("你个ＳＢ")}
    assert "insult.laji" in {m.entry.id for m in KB.match("你就是個廢物")}  # 繁体


def test_unknown_enum_values_fail_loudly(tmp_path: Path) -> None:
    path = tmp_path / "kb.yaml"
    path.write_text("version: x\nentries:\n  - {id: e1, phrases: [a], intent: sarcastic}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad knowledge-base entry 'e1'"):
        KnowledgeBase.load(path)


@pytest.mark.parametrize(("text", "entry_id", "how"), [
    ("你马死了", "insult.nmsl", "homophone"),      # 你妈死了 written with a homophone
    ("操尼码", "insult.nima", "homophone"),        # 草泥马 ~ 操尼码 (cao ni ma)
    ("你真是个nmd", "insult.nima", "initials"),    # 你妈的 -> nmd, not listed by hand
    ("ljdx别说话", "insult.laji", "initials"),      # 垃圾东西 -> ljdx
])
def test_evasions_are_caught_by_sound(text: str, entry_id: str, how: str) -> None:
    hits = {m.entry.id: m for m in KB.match(text)}
    assert entry_id in hits, text
    assert hits[entry_id].how == how


def test_phonetic_match_reports_the_characters_that_sounded_alike() -> None:
    hit = next(m for m in KB.match("他说你马死了吧") if m.entry.id == "insult.nmsl")
    assert (hit.text, hit.start) == ("你马死了", 2)


@pytest.mark.parametrize("text", ["你妈妈今天来了吗", "我们在商场买了很多东西", "lol 这波操作 ok"])
def test_ordinary_text_has_no_phonetic_false_positive(text: str) -> None:
    assert [m for m in KB.match(text) if m.how != "exact"] == []


def test_syllables_stay_aligned_with_characters() -> None:
    text = normalize("我ab1想你妈")
    assert len(syllables(text)) == len(text)
    assert initials("你妈死了") == "nmsl"
    assert initials("sb") is None and initials("傻逼") is None  # too short to derive


def test_external_entries_do_not_match_by_sound(tmp_path: Path) -> None:
    path = tmp_path / "kb.json"
    path.write_text('{"terms": [{"term": "你妈死了", "category": "others", "definition": "辱骂"}]}', encoding="utf-8")
    external = KnowledgeBase.load_c_harmkb(path)
    assert [m.how for m in external.match("你妈死了")] == ["exact"]
    assert external.match("你马死了") == []


def test_phrases_do_not_match_across_the_meme_text_and_post_text_border() -> None:
    assert "insult.shen-gou" not in {m.entry.id for m in KB.match(joined("笑死", "[狗头]"))}  # not 死狗
    assert "insult.shen-gou" in {m.entry.id for m in KB.match("笑死狗头")}
