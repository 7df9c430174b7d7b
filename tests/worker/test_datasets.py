"""Labelled sources: explicit label mappings, weights, and held-out test splits refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.datasets import (
    COUNTER_CLASS,
    DataError,
    Source,
    load_jsonl,
    load_toxicn_text,
)


def _toxicn_text(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def row(content: str, toxic: int, kind: int, expression: int, target: list[int] | None = None) -> dict[str, object]:
    return {
        "content": content,
        "toxic": toxic,
        "toxic_type": kind,
        "expression": expression,
        "target": target or [0, 0, 0, 0, 0],
    }


def test_toxicn_text_labels_map_onto_harm_types_and_intents(tmp_path: Path) -> None:
    items = load_toxicn_text(
        _toxicn_text(
            tmp_path,
            [
                row("今天天气好", 0, 0, 0),
                row("你个傻逼", 1, 1, 0),
                row("黑人都是……", 1, 2, 1, [0, 0, 0, 1, 0]),
                row("女的就是……", 1, 2, 2, [0, 0, 1, 0, 0]),
                row("地域黑要不得", 1, 2, 3, [0, 1, 0, 0, 0]),
            ],
        )
    )
    mapped = [(i.harm_type, i.intent, i.group, i.targets, i.training_class) for i in items]
    assert mapped == [
        (0, "", "non_toxic", (), 0),
        (3, "", "offensive", (), 3),
        (1, "explicit_attack", "explicit", ("racism",), 1),
        (1, "implicit_attack", "implicit", ("sexism",), 1),
        (0, "counter_speech", "reporting", ("region",), COUNTER_CLASS),  # reporting: harmless counter-speech
    ]
    assert [i.is_harmful for i in items] == [False, True, True, True, False]
    # the intent the expression gives is what evaluation scores the verdict's intent against
    assert [i.intents for i in items] == [(), (), ("explicit_attack",), ("implicit_attack",), ("counter_speech",)]
    assert [i.id for i in items] == ["0", "1", "2", "3", "4"]  # the position in the file: a report can name it


def test_sources_parse_name_path_and_weight(tmp_path: Path) -> None:
    assert Source.parse("toxicn-text", tmp_path) == Source("toxicn-text", tmp_path / "toxicn_text/train.json")
    assert Source.parse("toxicn-mm:0.5", tmp_path).weight == 0.5
    mine = Source.parse(f"jsonl={tmp_path / 'a.jsonl'}:2", tmp_path)
    assert (mine.name, mine.path, mine.weight) == ("jsonl", tmp_path / "a.jsonl", 2.0)
    for bad, message in (("nope", "unknown source"), ("jsonl", "needs a path"), ("toxicn-mm:0", "positive")):
        with pytest.raises(DataError, match=message):
            Source.parse(bad, tmp_path)


def test_a_loaded_source_describes_itself_for_the_artefact(tmp_path: Path) -> None:
    path = _toxicn_text(tmp_path, [row("好", 0, 0, 0), row("滚", 1, 1, 0)])
    source = Source("toxicn-text", path, 0.5).load()
    described = source.describe()
    assert described["items"] == 2 and described["weight"] == 0.5 and described["path"] == str(path.resolve())
    assert "reporting" in " ".join(described["mapping"]) and "counter_speech" in " ".join(described["mapping"].values())


def test_held_out_test_splits_and_missing_files_are_refused(tmp_path: Path) -> None:
    test_split = tmp_path / "test.json"
    test_split.write_text("[]", encoding="utf-8")
    with pytest.raises(DataError, match="held-out test split"):
        Source("toxicn-text", test_split).load()
    with pytest.raises(DataError, match="not found"):
        Source("toxicn-text", tmp_path / "missing.json").load()


def test_jsonl_items_for_training_and_for_evaluation(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {"text": "滚", "harm_type": 3},
                {"text": "好", "harm_type": "none", "intent": "counter_speech"},
                {
                    "id": "x",
                    "text": "图",
                    "label": 1,
                    "group": "g",
                    "post_text": "配文",
                    "scene": "评论",
                    "image": "m.png",
                },
            ]
        ),
        encoding="utf-8",
    )
    first, second, third = load_jsonl(path)
    assert (first.harm_type, second.training_class) == (3, COUNTER_CLASS)
    assert (third.harm_type, third.is_harmful, third.group) == (None, True, "g")
    assert (third.context, third.scene) == ("配文", "评论")
    assert third.image == str(tmp_path / "m.png")  # relative to the file
    with pytest.raises(DataError, match="has no harm_type"):
        third.training_class  # noqa: B018
    for line, message in (
        ('{"text": "x"}', "give harm_type"),
        ('{"text": "x", "harm_type": 9}', "0..4"),
        ('{"text": "x", "harm_type": 3, "label": 0}', "contradicts"),
        ("[1]", "JSON object"),
        ("{not json", "items.jsonl:1"),
    ):
        path.write_text(line + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=message):
            load_jsonl(path)
