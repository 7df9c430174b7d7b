"""Fast path and explanation path on the tiny model: labels from the logits over allowed tokens, batched
outputs equal to batch-size-1 outputs (left padding), and robust parsing of the free text."""

from __future__ import annotations

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
    singles = [reading.generate_explanations(tiny, [p], [m], max_new_tokens=12)[0]
               for p, m in zip(prompts, memes, strict=True)]
    assert batched == singles and all(batched)


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"image": "熊猫头", "text": "急了", "explanation": "阴阳怪气"}',
     {"image": "熊猫头", "text": "急了", "explanation": "阴阳怪气"}),
    ('好的：```json\n{"explanation": "嘲讽", "extra": 1,}\n```', {"explanation": "嘲讽"}),
    ("{'explanation': '单引号也行'}", {"explanation": "单引号也行"}),
    ('{"image": "狗头", "explanation": "被截断的说', {"image": "狗头", "explanation": "被截断的说"}),
])
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
        tiny, prompts, memes, 12, prefix=prefix)
    assert prefix.cache.get_seq_length() == prefix.ids.shape[1]  # the shared cache itself is never extended


def test_rows_without_the_prefix_run_without_the_cache(tiny: LoadedModel, memes: list[Image.Image]) -> None:
    prefix = reading.PrefixCache.build(tiny, "另一个系统提示")
    assert prefix.batch(tiny, _texts(tiny, 1), memes[:1]) is None
    ids = reading.code_token_ids(tiny.processor)
    assert reading.read_labels(tiny, _texts(tiny, 1), memes[:1], ids, prefix)[0].codes == reading.read_labels(
        tiny, _texts(tiny, 1), memes[:1], ids)[0].codes
