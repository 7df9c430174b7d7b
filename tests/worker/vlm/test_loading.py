"""Loading through the Auto classes from a local directory, INT8 weights (torchao) and how close they stay."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from worker.vlm import reading, synthetic
from worker.vlm.loading import LoadedModel, VlmLoadError, load, weight_bytes
from worker.vlm.prompt import messages


def test_the_real_classes_load_from_a_local_directory(tiny: LoadedModel) -> None:
    assert type(tiny.processor).__name__ == "Glm46VProcessor"
    assert type(tiny.model).__name__ == "Glm46VForConditionalGeneration"
    assert tiny.model_type == "glm46v" and tiny.dtype == torch.float32 and tiny.device.type == "cpu"
    image_token = tiny.processor.tokenizer.convert_tokens_to_ids("<|image|>")
    assert tiny.model.config.image_token_id == image_token  # read from the checkpoint, not assumed
    assert tiny.processor.tokenizer.padding_side == "left"


def test_nothing_is_downloaded(tmp_path: Path) -> None:
    with pytest.raises(VlmLoadError, match="without downloading"):
        load(tmp_path / "missing", device="cpu")
    with pytest.raises(VlmLoadError, match="without downloading"):
        load("zai-org/GLM-4.6V-Flash", device="cpu")  # an id not in the local cache is not fetched


def test_unusable_quantisation_settings_are_refused_by_name(tiny_dir: Path) -> None:
    with pytest.raises(VlmLoadError, match="needs CUDA"):
        load(tiny_dir, quant="bnb8", device="cpu")
    with pytest.raises(VlmLoadError, match="one of none, int8, bnb8"):
        load(tiny_dir, quant="int4", device="cpu")


def _logits(loaded: LoadedModel, memes: list) -> torch.Tensor:  # type: ignore[type-arg]
    texts = reading.prompt_texts(loaded, [messages(f"配文{i}", "", [], {}) for i in range(len(memes))])
    batch = reading.batch_inputs(loaded, texts, memes)
    with torch.inference_mode():
        logits: torch.Tensor = loaded.model(**batch).logits
    return logits[batch["attention_mask"].bool()]  # every real position of every row


def test_int8_weights_are_smaller_and_their_logits_stay_close(tiny_dir: Path, tiny: LoadedModel, memes: list) -> None:  # type: ignore[type-arg]
    int8 = load(tiny_dir, quant="int8", device="cpu")
    linear = [m for m in tiny.model.modules() if isinstance(m, torch.nn.Linear)]
    linear_q = [m for m in int8.model.modules() if isinstance(m, torch.nn.Linear)]
    full, quantised = (sum(weight_bytes(m) for m in mods) for mods in (linear, linear_q))
    assert quantised <= 0.30 * full  # int8 + per-channel scales vs fp32 (vs bf16 this is <= 0.55)
    assert weight_bytes(int8.model.lm_head) <= 0.30 * weight_bytes(tiny.model.lm_head)  # the head too
    assert int8.weight_bytes < 0.6 * tiny.weight_bytes  # the whole model, embeddings included
    reference, approximate = _logits(tiny, memes), _logits(int8, memes)
    cosine = F.cosine_similarity(reference, approximate, dim=-1)
    agreement = (reference.argmax(-1) == approximate.argmax(-1)).float().mean().item()
    assert cosine.min().item() >= 0.99 and agreement >= 0.95
    ids = reading.code_token_ids(tiny.processor)
    texts = reading.prompt_texts(tiny, [messages("配文", "", [], {})])
    [raw], [q] = (reading.read_labels(m, texts, memes[:1], ids) for m in (tiny, int8))
    gap = max(abs(raw.probs[f][c] - q.probs[f][c]) for f in range(3) for c in raw.probs[f])
    assert gap <= 0.02, gap  # the label probabilities, read through the quantised head


def test_the_glm4v_model_type_loads_and_reads_labels_too(tmp_path: Path, memes: list) -> None:  # type: ignore[type-arg]
    """A checkpoint whose config says ``glm4v`` (GLM-4.1V's classes, the same network) goes through the same
    Auto classes and the same fast path: nothing in memeguard assumes one model type."""
    loaded = load(synthetic.build(tmp_path / "glm4v", arch="glm4v"), device="cpu")
    assert loaded.model_type == "glm4v" and type(loaded.model).__name__ == "Glm4vForConditionalGeneration"
    ids = reading.code_token_ids(loaded.processor)
    texts = reading.prompt_texts(loaded, [messages(f"配文{i}", "", [], {}) for i in range(2)])
    batched = reading.read_labels(loaded, texts, memes[:2], ids)
    assert [b.codes for b in batched] == [
        reading.read_labels(loaded, [t], [m], ids)[0].codes for t, m in zip(texts, memes[:2], strict=True)
    ]
