from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import pytest

from memeguard.schemas import HarmType
from worker.knowledge import JAPANESE_FORMS, Entry, KnowledgeBase, initials, joined, normalize, syllables
from worker.match_reading import read

KB = KnowledgeBase.bundled()


def test_bundled_knowledge_base_has_at_least_50_entries_with_notes() -> None:
    assert len(KB.entries) >= 50
    assert all(entry.note and (entry.phrases or entry.patterns) for entry in KB.entries)


@pytest.mark.parametrize("entry", KB.entries, ids=lambda e: e.id)
def test_every_example_matches_its_entry(entry) -> None:  # type: ignore[no-untyped-def]
    assert entry.examples, f"{entry.id} has no examples"
    for example in entry.examples:
        assert entry.id in {m.entry.id for m in KB.match(example)}, example


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("你说得对，但是", "你说得对但是"),  # punctuation
        ("你 说 得 对 但 是", "你说得对但是"),  # inserted spaces (OCR noise)
        ("ＳＢ", "sb"),  # full-width
        ("你说得对…但是！", "你说得对但是"),
        ("手动🐶", "手动🐶"),  # meaningful emoji stay
        ("我媽說你這個垃圾", "我妈说你这个垃圾"),  # traditional -> simplified
        ("黒人都是這様", "黑人都是这样"),  # Japanese forms -> simplified
        ("女挙", "女拳"),  # 挙 borrowed for its look
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_japanese_forms_map_only_what_chinese_text_never_uses() -> None:
    """Every source is outside GB2312 (so no simplified Chinese text changes) and every target inside it."""
    for source, target in JAPANESE_FORMS.items():
        with pytest.raises(UnicodeEncodeError):
            chr(source).encode("gb2312")
        assert chr(target).encode("gb2312")
        assert chr(source) != chr(target)
    assert "insult.laji" in {m.entry.id for m in KB.match("你就是个廃物")}


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


@pytest.mark.parametrize(
    ("text", "entry_id", "how"),
    [
        ("你马死了", "insult.nmsl", "homophone"),  # 你妈死了 written with a homophone
        ("操尼码", "insult.nima", "homophone"),  # 草泥马 ~ 操尼码 (cao ni ma)
        ("你真是个nmd", "insult.nima", "initials"),  # 你妈的 -> nmd, not listed by hand
        ("ljdx别说话", "insult.laji", "initials"),  # 垃圾东西 -> ljdx
    ],
)
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
    assert "insult.qusi" not in {m.entry.id for m in KB.match(joined("你快去", "死吧"))}
    assert "insult.qusi" in {m.entry.id for m in KB.match("你快去死吧")}


@pytest.mark.parametrize(
    ("text", "entry_id"),
    [
        ("中国女权主义者", "targeted.gender-slur"),  # the slur 国女 inside 中国 + 女权
        ("中国女性的就业率在提高", "targeted.gender-slur"),
        ("笑死，狗都不理", "insult.shen-gou"),  # 死狗 across a comma
        ("笑死狗头", "insult.shen-gou"),  # 死狗 across 笑死 + 狗头
        ("废物利用是个好习惯", "insult.laji"),  # 废物 inside 废物利用
    ],
)
def test_matches_never_reach_inside_a_word_or_across_a_clause(text: str, entry_id: str) -> None:
    assert entry_id not in {m.entry.id for m in KB.match(text)}, text


@pytest.mark.parametrize(
    ("text", "entry_id"),
    [
        ("这个国女真是的", "targeted.gender-slur"),
        ("你这死狗", "insult.shen-gou"),
        ("真是个人渣", "insult.hundan"),  # 个人 + 渣 is the dictionary's route, 个 + 人渣 what is meant
        ("你个sb赶紧去死", "insult.qusi"),
        ("你说得对，但是我不听", "sarcasm.nishuodedui-danshi"),  # the entry's phrase spans the comma itself
        ("你说得对但是我不听", "sarcasm.nishuodedui-danshi"),
    ],
)
def test_matches_on_word_boundaries_still_find_what_is_meant(text: str, entry_id: str) -> None:
    assert entry_id in {m.entry.id for m in KB.match(text)}, text


def test_line_breaks_and_spaces_are_layout_not_clause_ends() -> None:
    assert "insult.qusi" in {m.entry.id for m in KB.match("你怎么还不去\n死")}  # OCR wraps mid-word
    assert "insult.qusi" in {m.entry.id for m in KB.match("你 去 死 吧")}


def test_a_pattern_does_not_span_a_clause_unless_its_entry_says_so() -> None:
    kb = KnowledgeBase(
        [_pattern_entry("test.p", "你.{0,3}垃圾", across=False), _pattern_entry("test.q", "你.{0,3}垃圾", across=True)],
        "t",
    )
    assert {m.entry.id for m in kb.match("你好，垃圾")} == {"test.q"}


def _pattern_entry(entry_id: str, pattern: str, across: bool) -> Entry:
    return Entry(
        entry_id,
        (),
        (re.compile(pattern),),
        None,
        None,
        HarmType.GENERAL_OFFENSE,
        0.5,
        False,
        "test",
        (),
        "test",
        across_clauses=across,
        evidence=True,
    )


EVERYDAY = [
    line.strip()
    for line in (Path(__file__).parent / "data" / "everyday_group_mentions.txt")
    .read_text(encoding="utf-8")
    .splitlines()
    if line.strip() and not line.startswith("#")
]
DATASETS = Path(os.environ.get("MEMEGUARD_DATASETS_DIR", Path(__file__).resolve().parents[3] / "shared" / "datasets"))


def attacks_per_thousand(kb: KnowledgeBase, sentences: list[str]) -> float:
    """Knowledge-base matches read as an attack (what a block may rest on) per 1,000 sentences."""
    return 1000 * sum(sum(m.attacking for m in read(kb.match(s), s)) for s in sentences) / len(sentences)


def test_everyday_mentions_of_groups_are_not_read_as_attacks() -> None:
    """The list of everyday group mentions (tests/worker/data) holds no slur and no attack: measured 8.8 per
    1,000 sentences with the bundled knowledge base (女司机 in 「女司机开车也很稳」), and the same with C-HarmKB
    and ToxiCN's lexicon; before word and clause boundaries and the evidence/topic split it was 386."""
    assert len(EVERYDAY) >= 100
    assert attacks_per_thousand(KB, EVERYDAY) <= 20
    externals = [DATASETS / "c_harmkb" / "C-harmKB.json", DATASETS / "toxicn_text" / "lexicon"]
    if all(p.exists() for p in externals):
        kb = KB.merged(KnowledgeBase.load_any(externals[0])).merged(KnowledgeBase.load_any(externals[1]))
        assert attacks_per_thousand(kb, EVERYDAY) <= 20


@pytest.mark.slow  # reads the whole ToxiCN text and MM train sets
@pytest.mark.skipif(not (DATASETS / "toxicn_text" / "train.json").exists(), reason="ToxiCN text not present")
def test_harmless_training_sentences_rarely_hold_an_attack() -> None:
    """2,000 harmless sentences of the train splits (ToxiCN comments labelled non-toxic, ToxiCN MM captions
    labelled harmless): measured 23 attacks per 1,000 with the bundled knowledge base and 54 with C-HarmKB and
    ToxiCN's lexicon (mostly real slurs in sentences that discuss them: 女拳, 国男, 他妈)."""
    text = json.loads((DATASETS / "toxicn_text" / "train.json").read_text(encoding="utf-8"))
    memes = json.loads((DATASETS / "toxicn_mm" / "train_2.0.json").read_text(encoding="utf-8"))
    harmless = [r["content"] for r in text if r["toxic"] == 0] + [r["text"] for r in memes if r["type"] == 0]
    sample = random.Random(0).sample(harmless, 2000)
    assert attacks_per_thousand(KB, sample) <= 35
    if (DATASETS / "c_harmkb" / "C-harmKB.json").exists():
        kb = KB.merged(KnowledgeBase.load_any(DATASETS / "c_harmkb" / "C-harmKB.json"))
        assert (
            attacks_per_thousand(kb.merged(KnowledgeBase.load_any(DATASETS / "toxicn_text" / "lexicon")), sample) <= 75
        )
