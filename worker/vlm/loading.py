"""Loading GLM-4.6V-Flash the way transformers means it to be loaded, plus INT8 weights.

``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained(path)`` from a local directory (or a model
id already in the local cache: nothing is downloaded at run time, ``local_files_only``). bf16 on GPU, fp32
on CPU. ``quant="int8"``: torchao int8 weight-only on every linear layer of the language model and the
vision tower except the output head (works on CPU and GPU); ``quant="bnb8"``: bitsandbytes LLM.int8() at
load time (CUDA only). The model type and the image token ids are read from the checkpoint's own config.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)
QUANTS = ("none", "int8", "bnb8")


class VlmLoadError(RuntimeError):
    """The model cannot be loaded as configured; the message says what to change."""


@dataclass
class LoadedModel:
    processor: Any
    model: Any
    device: torch.device
    dtype: torch.dtype
    quant: str
    weight_bytes: int
    load_s: float

    @property
    def model_type(self) -> str:
        return str(self.model.config.model_type)


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise VlmLoadError(f"MEMEGUARD_VLM_DEVICE={requested} but no CUDA device is visible")
    return torch.device(requested)


def load(source: str | Path, *, quant: str = "none", device: str = "auto") -> LoadedModel:
    """The processor and the model, in eval mode on ``device``, weights quantised as asked."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if quant not in QUANTS:
        raise VlmLoadError(f"MEMEGUARD_VLM_QUANT={quant!r}: one of {', '.join(QUANTS)}")
    target = pick_device(device)
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    started = time.perf_counter()
    try:
        processor: Any = AutoProcessor.from_pretrained(source, local_files_only=True)  # type: ignore[no-untyped-call]
        model: Any = AutoModelForImageTextToText.from_pretrained(
            source, local_files_only=True, **_load_kwargs(quant, target, dtype)
        )
    except OSError as exc:
        raise VlmLoadError(f"cannot load a model from {source!r} without downloading: {exc}") from exc
    if quant != "bnb8":
        model = model.to(target)
    if quant == "int8":
        quantize_int8(model)
    processor.tokenizer.padding_side = "left"  # batched generation appends on the right
    loaded = LoadedModel(
        processor, model.eval(), target, dtype, quant, weight_bytes(model), time.perf_counter() - started
    )
    log.info(
        "VLM loaded",
        extra={
            "model_type": loaded.model_type,
            "device": str(target),
            "dtype": str(dtype),
            "quant": quant,
            "weight_gb": round(loaded.weight_bytes / 1e9, 3),
            "load_s": round(loaded.load_s, 2),
        },
    )
    return loaded


def _load_kwargs(quant: str, target: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    if quant != "bnb8":
        return {"dtype": dtype}
    if target.type != "cuda":
        raise VlmLoadError("MEMEGUARD_VLM_QUANT=bnb8 needs CUDA (bitsandbytes); use int8 (torchao) on CPU")
    from transformers import BitsAndBytesConfig

    return {
        "dtype": dtype,
        "device_map": {"": target.index or 0},
        "quantization_config": BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_8bit=True, llm_int8_skip_modules=["lm_head"]
        ),
    }


def quantize_int8(model: torch.nn.Module) -> None:
    """torchao int8 weight-only (per output channel) on every ``nn.Linear``, the output head included.

    The head is 0.62 B of GLM-4.6V-Flash's 10.3 B parameters: kept in bf16 it leaves the int8 model at 56 % of
    the bf16 weights (the target is ≤ 55 %), quantised 53 %. Per-channel scales give each vocabulary row —
    each label code's logit — its own scale, so the label probabilities stay close to the unquantised ones
    (cosine and top-1 agreement are tested on the tiny model and reported at full size by bench/vlm.py)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    def wanted(module: torch.nn.Module, name: str) -> bool:
        return isinstance(module, torch.nn.Linear)

    quantize_(model, Int8WeightOnlyConfig(), filter_fn=wanted)


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes held by parameters and buffers, counting what quantised tensors really store (int8 data plus
    scales), not their nominal dtype."""
    return sum(_tensor_bytes(t) for t in [*model.parameters(), *model.buffers()])


def _tensor_bytes(tensor: torch.Tensor) -> int:
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None and type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        names, _ = flatten()
        return sum(_tensor_bytes(getattr(tensor, name)) for name in names)
    if isinstance(tensor, torch.nn.Parameter) and type(tensor.data) is not torch.Tensor:
        return _tensor_bytes(tensor.data)
    return tensor.numel() * tensor.element_size()
