"""Fast path and explanation path on the tiny model: labels from the logits over allowed tokens, batched
outputs equal to batch-size-1 outputs (left padding), and robust parsing of the free text."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from worker.vlm import reading
from worker.vlm.loading import LoadedModel
from worker.vlm.prompt import CODES, SYSTEM_PROMPT, messages


def _texts(loaded: LoadedModel, n: int) -> list[str]:
    posts = ["你说得对，但是我不听", "笑死", "这是一段更长的配文，用来让批内各行长度不同，需要左填充。"]
    return reading.prompt_texts(loaded, [messages(posts[i % 3], "", [], {}) for i in range(n)])


def test_labels_come_from_a_distribution_over_the_allowed_codes(tiny: LoadedModel, memes: list[Image.Image]) -> None:
    ids = reading.code_token_ids(tiny.processor)
    [read] = reading.read_labels(tiny, _texts(tiny, 1), memes[:1], ids)
    for field, ((_, table), probs) in enumerate(zip(CODES.fields, read.probs, strict=True)):
        assert set(probs) == set(table) and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert read.codes[field] == max(probs, key=probs.__getitem__)  # greedy = most probable allowed label


def test_batched_labels_equal_batch_size_one(tiny: LoadedModel, memes: list[Image.Image]) -> None:
    ids = reading.code_token_ids(tiny.processor)
    texts = _texts(tiny, 3)
    batched = reading.read_labels(tiny, texts, memes, ids)
    singles = [reading.read_labels(tiny, [t], [m], ids)[0] for t, m in zip(texts, memes, strict=True)]
    for b, s in zip(batched, singles, strict=True):
        assert b.codes == s.codes
        for pb, ps in zip(b.probs, s.probs, strict=True):
            assert pb == pytest.approx(ps, abs=1e-4)


def test_batched_explanations_equal_batch_size_one(tiny: LoadedModel, memes: list[Image.Image]) -> None:
    ids = reading.code_token_ids(tiny.processor)
    texts = _texts(tiny, 3)
    reads = reading.read_labels(tiny, texts, memes, ids)
    prompts = [reading.explanation_prompt(t, r) for t, r in zip(texts, reads, strict=True)]
    batched = reading.generate_explanations(tiny, prompts, memes, max_new_tokens=12)
    singles = [
        reading.generate_explanations(tiny, [p], [m], max_new_tokens=12)[0] for p, m in zip(prompts, memes, strict=True)
    ]
    assert batched == singles and all(batched)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            '{"image": "熊猫头", "text": "急了", "explanation": "阴阳怪气"}',
            {"image": "熊猫头", "text": "急了", "explanation": "阴阳怪气"},
        ),
        ('好的：```json\n{"explanation": "嘲讽", "extra": 1,}\n```', {"explanation": "嘲讽"}),
        ("{'explanation': '单引号也行'}", {"explanation": "单引号也行"}),
        ('{"image": "狗头", "explanation": "被截断的说', {"image": "狗头", "explanation": "被截断的说"}),
    ],
)
def test_explanations_are_repaired_where_models_break_json(raw: str, expected: dict[str, str]) -> None:
    assert reading.parse_explanation(raw) == expected


@pytest.mark.parametrize("raw", ["", "我觉得这很安全", '{"verdict": "safe"}', "{{{{"])
def test_unreadable_explanations_raise(raw: str) -> None:
    with pytest.raises(reading.VlmOutputError):
        reading.parse_explanation(raw)


def test_the_shared_prefix_cache_gives_the_same_labels_and_text(tiny: LoadedModel, memes: list[Image.Image]) -> None:
    """The system prompt's KV computed once and reused (rows padded in the middle) changes nothing."""
    ids = reading.code_token_ids(tiny.processor)
    texts = _texts(tiny, 3)
    prefix = reading.PrefixCache.build(tiny, SYSTEM_PROMPT)
    assert prefix.ids.shape[1] > 100 and prefix.cache.get_seq_length() == prefix.ids.shape[1]
    plain, cached = (reading.read_labels(tiny, texts, memes, ids, p) for p in (None, prefix))
    for a, b in zip(plain, cached, strict=True):
        assert a.codes == b.codes
        for pa, pb in zip(a.probs, b.probs, strict=True):
            assert pa == pytest.approx(pb, abs=1e-4)
    prompts = [reading.explanation_prompt(t, r) for t, r in zip(texts, plain, strict=True)]
    assert reading.generate_explanations(tiny, prompts, memes, 12) == reading.generate_explanations(
        tiny, prompts, memes, 12, prefix=prefix
    )
    assert prefix.cache.get_seq_length() == prefix.ids.shape[1]  # the shared cache itself is never extended


def test_rows_without_the_prefix_run_without_the_cache(tiny: LoadedModel, memes: list[Image.Image]) -> None:
    prefix = reading.PrefixCache.build(tiny, "另一个系统提示")
    assert prefix.batch(tiny, _texts(tiny, 1), memes[:1]) is None
    ids = reading.code_token_ids(tiny.processor)
    assert (
        reading.read_labels(tiny, _texts(tiny, 1), memes[:1], ids, prefix)[0].codes
        == reading.read_labels(tiny, _texts(tiny, 1), memes[:1], ids)[0].codes
    )


# Ways GLM-style models break the explanation JSON, each with what a reader should get out of it.
BROKEN_OUTPUTS: list[tuple[str, str, dict[str, str]]] = [
    (
        "prose and a code fence",
        '好的，结果如下：\n```json\n{"image": "狗头", "text": "你说得对", "explanation": "讽刺"}\n```',
        {"image": "狗头", "text": "你说得对", "explanation": "讽刺"},
    ),
    ("single quotes", "{'image': '狗头', 'explanation': '讽刺'}", {"image": "狗头", "explanation": "讽刺"}),
    ("trailing comma", '{"image": "狗头", "explanation": "讽刺",}', {"image": "狗头", "explanation": "讽刺"}),
    (
        "cut inside a value",
        '{"image": "狗头", "explanation": "讽刺对方的',
        {"image": "狗头", "explanation": "讽刺对方的"},
    ),
    ("missing closing brace", '{"image": "狗头", "explanation": "讽刺"', {"image": "狗头", "explanation": "讽刺"}),
    (
        "unescaped inner quote",
        '{"image": "写着"加油"的图", "explanation": "鼓励"}',
        {"image": '写着"加油"的图', "explanation": "鼓励"},
    ),
    ("missing comma", '{"image": "狗头" "explanation": "讽刺"}', {"image": "狗头", "explanation": "讽刺"}),
    ("cut after a key", '{"image": "狗头", "explanation":', {"image": "狗头"}),
    (
        "raw newline in a string",
        '{"image": "狗头", "explanation": "第一行\n第二行"}',
        {"image": "狗头", "explanation": "第一行\n第二行"},
    ),
    ("full-width quotes", "{“image”: “狗头”, “explanation”: “讽刺”}", {"image": "狗头", "explanation": "讽刺"}),
    ("unquoted keys", '{image: "狗头", explanation: "讽刺"}', {"image": "狗头", "explanation": "讽刺"}),
    (
        "prose after the object",
        '{"image": "狗头", "explanation": "讽刺"} 以上是我的分析。',
        {"image": "狗头", "explanation": "讽刺"},
    ),
]


def handwritten(raw: str) -> dict[str, str]:
    """The repair parse_explanation used before json-repair (kept here as the measured baseline)."""
    import json
    import re

    text = re.sub(r"```(?:json)?", "", raw).strip()
    start = text.find("{")
    if start < 0:
        raise reading.VlmOutputError("no object")
    end = text[start:].rfind("}")
    whole = text[start:][: end + 1] if end >= 0 else text[start:]
    fixed = re.sub(r",\s*([}\]])", r"\1", whole.replace("'", '"'))
    cut = text[start:].rstrip().rstrip(",")
    closed = cut + ('"' if cut.count('"') % 2 else "") + "}"
    for candidate in [whole, fixed, closed, re.sub(r",\s*([}\]])", r"\1", closed.replace("'", '"'))]:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and any(data.get(k) for k in reading.EXPLANATION_KEYS):
            return {k: str(data[k]).strip() for k in reading.EXPLANATION_KEYS if data.get(k)}
    raise reading.VlmOutputError("unreadable")


def read_correctly(parse: Any) -> list[str]:
    ok = []
    for name, raw, expected in BROKEN_OUTPUTS:
        try:
            if parse(raw) == expected:
                ok.append(name)
        except reading.VlmOutputError:
            continue
    return ok


def test_json_repair_reads_more_broken_outputs_than_the_handwritten_repair() -> None:
    """The measurement behind the choice (parse_explanation's docstring quotes it): the library reads every
    broken output of the corpus, the hand-written repair it replaced reads fewer."""
    library, ours = read_correctly(reading.parse_explanation), read_correctly(handwritten)
    assert len(library) == len(BROKEN_OUTPUTS), set(n for n, _, _ in BROKEN_OUTPUTS) - set(library)
    assert len(ours) == 6 and set(ours) < set(library)
