"""Readers for labelled data used by ``memeguard train`` and ``memeguard eval`` (never bundled: read from
the configured path, e.g. ``../shared/datasets/toxicn_mm``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabelledItem:
    text: str
    harm_type: int  # 0 none, 1 targeted harm, 2 sexual innuendo, 3 general offense, 4 dispirited culture
    context: str = ""  # post context: ToxiCN's image description, or a JSONL row's "context"
    reading: str = ""  # ToxiCN only: an LLM's reading of the caption (never used unless asked for)


def load_toxicn(path: Path) -> list[LabelledItem]:
    """ToxiCN MM v2 (``train_2.0.json`` / ``test_2.0.json``): the meme's text and its harm type, the dataset's
    description of the image as context, and its LLM-written reading of the caption (``text_discription``)."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [LabelledItem(str(r["text"]).strip(), int(r["type"]), str(r.get("meme_discription", "")),
                         str(r.get("text_discription", ""))) for r in rows]


def load_jsonl(path: Path) -> list[LabelledItem]:
    """Generic labelled data: one ``{"text": ..., "harm_type": 0..4, "context": optional post text}`` object
    per line."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row.get("harm_type"), int) or not 0 <= row["harm_type"] <= 4:
                raise ValueError(f"{path}:{number}: harm_type must be an integer 0..4")
            items.append(LabelledItem(str(row["text"]), row["harm_type"], str(row.get("context", ""))))
    return items


def load_labelled(path: Path) -> list[LabelledItem]:
    return load_jsonl(path) if path.suffix == ".jsonl" else load_toxicn(path)
