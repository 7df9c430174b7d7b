from __future__ import annotations

from pathlib import Path

import pytest

from worker.kb import KnowledgeBase, normalize

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
