"""The model calls: the fast path reads the labels from the logits, the explanation path generates text.

Fast path: prompt + ``标签：`` prefilled, then three decode steps, each restricted to the allowed label tokens
(emotion codes, then intent codes, then harm digits) by a logits processor; greedy picks the most probable
allowed token, and the label's probability is the softmax of the raw logits over the allowed tokens only —
a distribution over the labels, which is what calibration needs (not a number the model writes).
Explanation path: the same prompt with the chosen codes, then up to ``max_new_tokens`` of free text.
Both batch with left padding and one ``generate`` call per batch.
"""

from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass
from typing import Any

import json_repair
import torch
from PIL import Image

from worker.vlm.loading import LoadedModel
from worker.vlm.prompt import ANSWER_PREFIX, CODES, EXPLAIN_PREFIX, Codebook


class VlmOutputError(ValueError):
    """The model's free text could not be read as the JSON asked for."""


@dataclass(frozen=True)
class LabelRead:
    """One item's labels: the chosen code per field and the probability of every allowed code."""

    codes: tuple[str, str, str]
    probs: tuple[dict[str, float], dict[str, float], dict[str, float]]

    def probability(self, field: int) -> float:
        return self.probs[field][self.codes[field]]


def code_token_ids(processor: Any, book: Codebook = CODES) -> list[dict[str, int]]:
    """Token id of every code; each code must be exactly one token of this tokenizer (checked at start-up,
    so a tokenizer that splits a code fails loudly instead of reading the wrong logit)."""
    tables = []
    for _, table in book.fields:
        ids = {}
        for code in table:
            pieces = processor.tokenizer.encode(code, add_special_tokens=False)
            if len(pieces) != 1:
                raise ValueError(f"label code {code!r} is {len(pieces)} tokens for this tokenizer, not one")
            ids[code] = pieces[0]
        tables.append(ids)
    return tables


class _AllowOnly:
    """Logits processor: at decode step k only the tokens of field k may be chosen."""

    def __init__(self, start: int, allowed: list[list[int]]) -> None:
        self.start, self.allowed = start, allowed

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.start
        mask = torch.full_like(scores, float("-inf"))
        mask[:, self.allowed[min(step, len(self.allowed) - 1)]] = 0
        return scores + mask


def prompt_texts(loaded: LoadedModel, conversations: list[list[dict[str, Any]]]) -> list[str]:
    """Chat-template texts, thinking disabled (GLM-4.6V's template honours ``enable_thinking``)."""
    return [
        loaded.processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False, enable_thinking=False)
        + ANSWER_PREFIX
        for c in conversations
    ]


def batch_inputs(loaded: LoadedModel, texts: list[str], images: list[Image.Image]) -> Any:
    """The processor's left-padded batch on the model's device (no prefix cache)."""
    batch = loaded.processor(text=texts, images=images, return_tensors="pt", padding=True)
    batch.pop("token_type_ids", None)
    return batch.to(loaded.device)


@dataclass
class PrefixCache:
    """The system prompt's KV, computed once per worker and reused by every batch (its rows share it).

    Rows are padded in the middle — ``[system prompt][padding][the item]`` — instead of on the left, so the
    shared prefix sits at the same positions in every row and its cached keys and values are exact; the
    padding is masked out, and GLM's 3-D positions are computed from the attention mask, so they skip it."""

    ids: torch.Tensor  # (1, P) token ids of the prefix
    cache: Any

    @classmethod
    @torch.inference_mode()
    def build(cls, loaded: LoadedModel, system_prompt: str) -> PrefixCache:
        text = loaded.processor.apply_chat_template([{"role": "system", "content": system_prompt}], tokenize=False)
        ids = loaded.processor.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        ids = ids.to(loaded.device)
        out = loaded.model(input_ids=ids, use_cache=True)
        return cls(ids, out["cache"] if "cache" in out else out["past_key_values"])  # renamed in 5.2x

    def batch(self, loaded: LoadedModel, texts: list[str], images: list[Image.Image]) -> tuple[Any, Any] | None:
        """Middle-padded inputs and a copy of the cache for this batch; None when a row does not start
        with the prefix (another template): the caller then runs without the cache."""
        rows = [loaded.processor(text=[t], images=[i], return_tensors="pt") for t, i in zip(texts, images, strict=True)]
        width = self.ids.shape[1]
        if any(not torch.equal(r["input_ids"][0, :width].to(self.ids.device), self.ids[0]) for r in rows):
            return None
        batch = _middle_padded(rows, width, loaded.processor.tokenizer.pad_token_id)
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(len(rows))
        return batch.to(loaded.device), cache


def _middle_padded(rows: list[Any], width: int, pad_id: int) -> Any:
    from transformers import BatchFeature

    longest = max(r["input_ids"].shape[1] for r in rows)
    columns: dict[str, list[torch.Tensor]] = {"input_ids": [], "attention_mask": [], "mm_token_type_ids": []}
    for r in rows:
        gap = longest - r["input_ids"].shape[1]
        for name, fill in (("input_ids", pad_id), ("attention_mask", 0), ("mm_token_type_ids", 0)):
            row = r[name][0]
            columns[name].append(torch.cat([row[:width], torch.full((gap,), fill, dtype=row.dtype), row[width:]]))
    data = {name: torch.stack(values) for name, values in columns.items()}
    data["pixel_values"] = torch.cat([r["pixel_values"] for r in rows])
    data["image_grid_thw"] = torch.cat([r["image_grid_thw"] for r in rows])
    return BatchFeature(data)


def _prepared(
    loaded: LoadedModel, texts: list[str], images: list[Image.Image], prefix: PrefixCache | None
) -> tuple[Any, dict[str, Any]]:
    """The batch and the extra ``generate`` arguments: with the shared-prefix cache when it applies."""
    _forget_rope_deltas(loaded.model)
    cached = prefix.batch(loaded, texts, images) if prefix is not None else None
    if cached is None:
        return batch_inputs(loaded, texts, images), {}
    return cached[0], {_cache_kwarg(loaded.model): cached[1]}


def _forget_rope_deltas(model: Any) -> None:
    """Every batch brings new images, so the 3-D (M-RoPE) positions must be computed for it, never carried
    over from the previous batch. transformers before ~5.2x (5.17, the GPU image's) reuses the model's stored
    ``rope_deltas`` whenever ``generate`` gets a pre-filled cache — the shared prefix — and then builds
    text-only positions for the image tokens (a shape error). Clearing them makes every version compute them."""
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "rope_deltas"):
        inner.rope_deltas = None


def _cache_kwarg(model: Any) -> str:
    """transformers renamed ``past_key_values`` to ``cache`` (5.2x); use the name this version takes."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.inference_mode()
def read_labels(
    loaded: LoadedModel,
    texts: list[str],
    images: list[Image.Image],
    code_ids: list[dict[str, int]],
    prefix: PrefixCache | None = None,
) -> list[LabelRead]:
    """Three constrained greedy decode steps for the whole batch; labels and their probabilities."""
    batch, extra = _prepared(loaded, texts, images, prefix)
    allowed = [list(table.values()) for table in code_ids]
    out = loaded.model.generate(
        **batch,
        **extra,
        max_new_tokens=len(allowed),
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
        logits_processor=[_AllowOnly(batch["input_ids"].shape[1], allowed)],
    )
    return [_read_row(out.logits, row, code_ids) for row in range(len(texts))]


def _read_row(logits: tuple[torch.Tensor, ...], row: int, code_ids: list[dict[str, int]]) -> LabelRead:
    probs = []
    for step, table in enumerate(code_ids):
        raw = logits[step][row, list(table.values())].float()
        p = torch.softmax(raw, dim=-1).tolist()
        probs.append(dict(zip(table, p, strict=True)))
    codes = tuple(max(p, key=p.__getitem__) for p in probs)
    return LabelRead(codes, tuple(probs))  # type: ignore[arg-type]


@torch.inference_mode()
def generate_explanations(
    loaded: LoadedModel,
    texts: list[str],
    images: list[Image.Image],
    max_new_tokens: int,
    min_new_tokens: int = 0,
    prefix: PrefixCache | None = None,
) -> list[str]:
    """Greedy free text after the chosen codes, batched; the new tokens only, decoded. (``min_new_tokens``
    is for benchmarks: a random-weight model may stop at once.)"""
    batch, extra = _prepared(loaded, texts, images, prefix)
    out = loaded.model.generate(
        **batch, **extra, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=False
    )
    new = out[:, batch["input_ids"].shape[1] :]
    return [t.strip() for t in loaded.processor.batch_decode(new, skip_special_tokens=True)]


def explanation_prompt(text: str, read: LabelRead) -> str:
    return f"{text}{''.join(read.codes)}{EXPLAIN_PREFIX}"


EXPLANATION_KEYS = ("image", "text", "explanation")


def parse_explanation(raw: str) -> dict[str, str]:
    """The JSON the explanation step asks for, repaired where a model breaks it — code fences and prose
    around the object, single or full-width quotes, trailing or missing commas, an unescaped inner quote, a
    raw newline inside a string, output cut inside a value or after a key — by ``json-repair``, which read all
    12 broken outputs of the test corpus where the hand-written repair this replaced read 6. Unknown keys
    are dropped, values become strings. Nothing usable -> ``VlmOutputError``."""
    text = re.sub(r"```(?:json)?", "", raw).strip()
    start = min((i for i in (text.find("{"), text.find("｛")) if i >= 0), default=-1)
    if start < 0:
        raise VlmOutputError(f"no JSON object in the model output: {raw[:80]!r}")
    data = json_repair.loads(text[start:])
    if isinstance(data, dict) and any(data.get(k) for k in EXPLANATION_KEYS):
        return {k: str(data[k]).strip() for k in EXPLANATION_KEYS if data.get(k)}
    raise VlmOutputError(f"unreadable JSON in the model output: {raw[:80]!r}")
