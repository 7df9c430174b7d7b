"""GLM-4.6V-Flash serving figures: fast path and explanation path, batch sizes 1..16, bf16 and int8, beside
the physical floor of each figure.

A full-size random-weight model is built from GLM-4.6V-Flash's shapes (``--config config.json`` to use the
checkpoint's own file; weights are not needed for timing), with a locally made tokenizer and the real
processor. Inputs are real rendered memes resized to the pixel budget. Per batch size: warm-up, then
``--repeats`` timed batches; per-item latency is the batch's latency (every item waits for its batch).

Floors (see bench/README.md): a decode step reads every weight once (bytes / HBM bandwidth); prefill costs
2 x parameters x tokens FLOPs at the GPU's dense bf16 peak. Fast path = prefill + 2 decode steps (the first
label comes from the prefill's logits); explanation path = prefill + ``--explain-tokens`` decode steps.
Also measured: the fast path with the shared-prefix KV cache (``fast-cached``: the system prompt's KV computed
once, rows padded in the middle) beside the same path without it, and the system prompt's share of prefill.

``--tiny`` runs the same code on the tiny test model on CPU (a smoke run; its figures mean nothing).
``--json PATH`` writes one row per (precision, path, batch size).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from worker.samples import render_meme  # noqa: E402
from worker.vlm import reading, synthetic  # noqa: E402
from worker.vlm.analyzer import fit_pixels  # noqa: E402
from worker.vlm.loading import LoadedModel, quantize_int8, weight_bytes  # noqa: E402
from worker.vlm.prompt import SYSTEM_PROMPT, messages  # noqa: E402

CAPTIONS = [("你说得对，但是我不听", "doge"), ("笑死我了", "panda"), ("我破防了", "cat"), ("前方高能", "panda")]


def build_model(args: argparse.Namespace, device: torch.device, quant: str) -> LoadedModel:
    """Random weights initialised directly on the device in the serving dtype (a 9B init on CPU takes minutes)."""
    from transformers import Glm46VForConditionalGeneration

    tokenizer = synthetic.make_tokenizer() if args.tiny else synthetic.make_tokenizer(8000, chinese_corpus())
    text, vision = (synthetic.TINY_TEXT, synthetic.TINY_VISION) if args.tiny else _shapes(args.config)
    config = synthetic.make_config(tokenizer, text, vision)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model: Any = Glm46VForConditionalGeneration._from_config(config, dtype=dtype)
    model.eval()
    if quant == "int8":
        quantize_int8(model)
    processor = synthetic.make_processor(tokenizer)
    return LoadedModel(processor, model, device, dtype, quant, weight_bytes(model), 0.0)


def chinese_corpus() -> list[str]:
    """Text to train the benchmark's tokenizer on: the prompt and the knowledge base (all in this repo)."""
    return [SYSTEM_PROMPT, *(p.read_text(encoding="utf-8") for p in sorted((ROOT / "worker" / "kb").glob("*.yaml")))]


def _shapes(config_path: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    if config_path is None:
        return synthetic.FLASH_TEXT, synthetic.FLASH_VISION
    data = json.loads(config_path.read_text(encoding="utf-8"))
    keep_text = set(synthetic.FLASH_TEXT)
    keep_vision = set(synthetic.FLASH_VISION)
    return (
        {k: v for k, v in data["text_config"].items() if k in keep_text},
        {k: v for k, v in data["vision_config"].items() if k in keep_vision},
    )


def memes(n: int, max_pixels: int) -> list[Image.Image]:
    return [
        fit_pixels(Image.open(io.BytesIO(render_meme(*CAPTIONS[i % len(CAPTIONS)], size=(512, 512)))), max_pixels)
        for i in range(n)
    ]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Any, device: torch.device, repeats: int) -> list[float]:
    fn()  # warm-up (kernels, allocator)
    out = []
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        fn()
        sync(device)
        out.append((time.perf_counter() - started) * 1000)
    return out


def measure(loaded: LoadedModel, batch: int, path: str, args: argparse.Namespace) -> dict[str, Any]:
    images = memes(batch, args.pixels)
    texts = reading.prompt_texts(loaded, [messages("配文", "图中文字", [], {}) for _ in range(batch)])
    ids = reading.code_token_ids(loaded.processor)
    prefix = reading.PrefixCache.build(loaded, SYSTEM_PROMPT) if path == "fast-cached" else None
    if path.startswith("fast"):

        def run() -> Any:
            return reading.read_labels(loaded, texts, images, ids, prefix)
    else:
        reads = reading.read_labels(loaded, texts, images, ids)
        prompts = [reading.explanation_prompt(t, r) for t, r in zip(texts, reads, strict=True)]

        def run() -> Any:
            return reading.generate_explanations(
                loaded, prompts, images, args.explain_tokens, min_new_tokens=args.explain_tokens
            )

    if loaded.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ms = timed(run, loaded.device, args.repeats)
    inputs = reading.batch_inputs(loaded, texts, images)
    tokens = inputs["input_ids"].shape[1]
    real = int(inputs["attention_mask"].sum()) - (batch * prefix.ids.shape[1] if path == "fast-cached" else 0)
    patches = int(inputs["image_grid_thw"].prod(-1).sum())
    floor = floor_ms(Sizes.of(loaded.model), real, patches, 2 if path.startswith("fast") else args.explain_tokens, args)
    mean = statistics.fmean(ms)
    return {
        "precision": "int8" if loaded.quant == "int8" else str(loaded.dtype).removeprefix("torch."),
        "path": path,
        "batch": batch,
        "prompt_tokens": tokens,
        "p50_ms": statistics.median(ms),
        "p95_ms": sorted(ms)[min(len(ms) - 1, int(0.95 * len(ms)))],
        "items_per_s": batch * 1000 / mean,
        "floor_ms": floor,
        "floor_items_per_s": batch * 1000 / floor,
        "x_floor": mean / floor,
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 1e9 if loaded.device.type == "cuda" else None,
    }


@dataclass(frozen=True)
class Sizes:
    """What each part of the model costs: the language model (decoder layers, final norm, output head) is read
    once per decode step and multiplies every prompt token; the ViT only sees image patches, in the prefill;
    the input embedding table is a row lookup (neither read whole nor multiplied)."""

    lm_params: int
    lm_bytes: int
    vit_params: int
    vit_bytes: int

    @classmethod
    def of(cls, model: Any) -> Sizes:
        text = model.model.language_model
        lm = [text.layers, text.norm, model.lm_head]
        return cls(
            sum(p.numel() for m in lm for p in m.parameters()),
            sum(weight_bytes(m) for m in lm),
            sum(p.numel() for p in model.model.visual.parameters()),
            weight_bytes(model.model.visual),
        )


def floor_ms(sizes: Sizes, tokens: int, patches: int, decode_steps: int, args: argparse.Namespace) -> float:
    """The physical floor of one batch: the prefill at the GPU's dense peak (2 x language-model parameters x
    the batch's real uncached prompt tokens + 2 x ViT parameters x its image patches) or its weight reads,
    whichever is longer, plus one read of the language model's weights per decode step."""
    read_ms = sizes.lm_bytes / (args.hbm_tbps * 1e12) * 1000
    flops = 2 * sizes.lm_params * tokens + 2 * sizes.vit_params * patches
    prefill_ms = max(
        flops / (args.tflops * 1e12) * 1000, (sizes.lm_bytes + sizes.vit_bytes) / (args.hbm_tbps * 1e12) * 1000
    )
    return prefill_ms + decode_steps * read_ms


def prefix_share(loaded: LoadedModel, args: argparse.Namespace) -> dict[str, float]:
    """Prefill time of the system prompt alone vs the whole fast-path prompt (batch 1): the system prompt's
    KV is the same for every item, so a shared-prefix cache would save this per item."""
    tok = loaded.processor.tokenizer
    system = tok(
        loaded.processor.apply_chat_template([{"role": "system", "content": SYSTEM_PROMPT}], tokenize=False),
        return_tensors="pt",
    ).to(loaded.device)
    with torch.inference_mode():
        prefix_ms = statistics.median(timed(lambda: loaded.model(**system), loaded.device, args.repeats))
    images = memes(1, args.pixels)
    batch = reading.batch_inputs(loaded, reading.prompt_texts(loaded, [messages("配文", "", [], {})]), images)
    with torch.inference_mode():
        full_ms = statistics.median(timed(lambda: loaded.model(**batch), loaded.device, args.repeats))
    return {
        "system_prompt_tokens": int(system["input_ids"].shape[1]),
        "prompt_tokens": int(batch["input_ids"].shape[1]),
        "system_prefill_ms": prefix_ms,
        "full_prefill_ms": full_ms,
        "share": prefix_ms / full_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="the checkpoint's config.json (default: GLM-4.6V-Flash shapes)")
    parser.add_argument("--tiny", action="store_true", help="smoke run: the tiny test model on CPU")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--quants", nargs="+", default=["none", "int8"], choices=["none", "int8"])
    parser.add_argument(
        "--paths",
        nargs="+",
        default=["fast", "fast-cached", "explain"],
        choices=["fast", "fast-cached", "explain"],
        help="fast-cached: with the shared-prefix KV",
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--pixels", type=int, default=512 * 512)
    parser.add_argument("--explain-tokens", type=int, default=64)
    parser.add_argument("--hbm-tbps", type=float, default=3.35, help="HBM bandwidth (H100 SXM 3.35)")
    parser.add_argument("--tflops", type=float, default=989.0, help="dense bf16 peak (H100 SXM 989)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    loaded = build_model(args, device, "none")  # one copy: measured, then quantised in place
    extra: dict[str, Any] = {
        "weights_gb_none": loaded.weight_bytes / 1e9,
        "prefix": prefix_share(loaded, args),
        "sizes_none": asdict(Sizes.of(loaded.model)),
    }
    reference = next_token_logits(loaded, args)
    rows = [measure(loaded, b, p, args) for p in args.paths for b in args.batch_sizes] if "none" in args.quants else []
    if "int8" in args.quants:
        quantize_int8(loaded.model)
        loaded = LoadedModel(
            loaded.processor, loaded.model, device, loaded.dtype, "int8", weight_bytes(loaded.model), 0
        )
        extra["weights_gb_int8"] = loaded.weight_bytes / 1e9
        extra["sizes_int8"] = asdict(Sizes.of(loaded.model))
        extra["int8_vs_unquantised"] = agreement(reference, next_token_logits(loaded, args))
        rows += [measure(loaded, b, p, args) for p in args.paths for b in args.batch_sizes]
    report(rows, extra, device, args)


def next_token_logits(loaded: LoadedModel, args: argparse.Namespace) -> torch.Tensor:
    """Logits at every real position of a batch of 4 memes (the INT8 agreement inputs)."""
    images = memes(4, args.pixels)
    texts = reading.prompt_texts(loaded, [messages(f"配文{i}", "", [], {}) for i in range(4)])
    batch = reading.batch_inputs(loaded, texts, images)
    with torch.inference_mode():
        logits: torch.Tensor = loaded.model(**batch).logits
    return logits[batch["attention_mask"].bool()].float()


def agreement(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    cosine = torch.nn.functional.cosine_similarity(reference, other, dim=-1)
    return {
        "cosine_min": cosine.min().item(),
        "cosine_mean": cosine.mean().item(),
        "top1_agreement": (reference.argmax(-1) == other.argmax(-1)).float().mean().item(),
    }


def report(rows: list[dict[str, Any]], extra: dict[str, Any], device: torch.device, args: argparse.Namespace) -> None:
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "CPU"
    print(
        f"GLM-4.6V {'tiny (smoke)' if args.tiny else 'full-size random weights'} on {name}; "
        f"weights: "
        + ", ".join(f"{k.removeprefix('weights_gb_')} {v:.2f} GB" for k, v in extra.items() if k.startswith("weights"))
    )
    print(
        f"{'prec':<9}{'path':<13}{'batch':>5}{'p50 ms':>10}{'p95 ms':>10}{'items/s':>10}{'floor ms':>10}"
        f"{'floor/s':>10}{'x floor':>8}{'peak GB':>9}"
    )
    for r in rows:
        peak = f"{r['peak_gpu_gb']:.1f}" if r["peak_gpu_gb"] is not None else "-"
        print(
            f"{r['precision']:<9}{r['path']:<13}{r['batch']:>5}{r['p50_ms']:>10.1f}{r['p95_ms']:>10.1f}"
            f"{r['items_per_s']:>10.1f}{r['floor_ms']:>10.1f}{r['floor_items_per_s']:>10.1f}{r['x_floor']:>8.1f}"
            f"{peak:>9}"
        )
    if "int8_vs_unquantised" in extra:
        a = extra["int8_vs_unquantised"]
        print(
            f"int8 vs unquantised next-token logits: cosine min {a['cosine_min']:.4f} mean {a['cosine_mean']:.4f}, "
            f"top-1 agreement {a['top1_agreement']:.1%}"
        )
    if "prefix" in extra:
        p = extra["prefix"]
        print(
            f"system prompt: {p['system_prompt_tokens']} of {p['prompt_tokens']} prompt tokens; its prefill "
            f"{p['system_prefill_ms']:.1f} ms of {p['full_prefill_ms']:.1f} ms ({p['share']:.0%}) per item"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"device": name, "tiny": args.tiny, **extra, "rows": rows}, indent=2) + "\n", encoding="utf-8"
        )


if __name__ == "__main__":
    main()
