"""Random-weight checkpoints of the GLM-4.6V architecture, made locally: for tests (a tiny one) and for timing
(full size: timing needs the shapes, not the weights). Nothing is downloaded.

A checkpoint here is what ``from_pretrained`` reads from a real one: ``config.json`` + weights, and a
processor (the real ``Glm46VProcessor`` with its image and video processors) whose tokenizer is a byte-level
BPE trained here on a little Chinese text, with the GLM special tokens and a chat template that, like
GLM-4.6V's, honours ``enable_thinking``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|image|>",
    "<|video|>",
    "<think>",
    "</think>",
]
CHAT_TEMPLATE = (
    "[gMASK]<sop>{% for m in messages %}<|{{ m.role }}|>\n{% if m.content is string %}{{ m.content }}"
    "{% else %}{% for c in m.content %}{% if c.type == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% elif c.type == 'text' %}{{ c.text }}{% endif %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% if enable_thinking is defined and not enable_thinking %}"
    "<think></think>\n{% endif %}{% endif %}"
)
TRAINING_TEXT = [
    "你说得对，但是我不听。笑死我了，狗头保命。前方高能，我破防了。图中文字，情绪，意图，危害类型。",
    '{"image": "熊猫头", "text": "急了", "explanation": "阴阳怪气"}',
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789 ,.:;!?()[]<>",
]
# GLM-4.6V-Flash's shapes (9B: a 40-layer GLM-4 decoder and a 24-layer ViT), as transformers' Glm46VConfig
# describes the family; pass the checkpoint's own config.json to ``full_size_config`` when you have it.
FLASH_TEXT = {
    "hidden_size": 4096,
    "intermediate_size": 13696,
    "num_hidden_layers": 40,
    "num_attention_heads": 32,
    "num_key_value_heads": 2,
    "vocab_size": 151552,
    "max_position_embeddings": 131072,
}
FLASH_VISION = {
    "depth": 24,
    "hidden_size": 1536,
    "intermediate_size": 13696,
    "num_heads": 12,
    "out_hidden_size": 4096,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "image_size": 336,
}
TINY_TEXT = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}
TINY_VISION = {
    **FLASH_VISION,
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": 128,
}


def make_tokenizer(vocab_size: int = 600, corpus: list[str] | None = None) -> Any:
    """A byte-level BPE tokenizer trained here, with GLM's special tokens; pads on the left. The benchmark
    trains it on more Chinese (``corpus``) so prompts tokenise to about GLM's length, not byte by byte."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        [*TRAINING_TEXT, *(corpus or [])],
        trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast: Any = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    return fast


ARCHS = ("glm46v", "glm4v")  # GLM-4.6V's own classes, and GLM-4.1V's (the same network, older model type)


def _classes(arch: str) -> tuple[Any, Any, Any, Any, Any]:
    """(config, model, processor, image processor, video processor) classes of an architecture."""
    import transformers as tf

    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}: one of {', '.join(ARCHS)}")
    prefix = "Glm46V" if arch == "glm46v" else "Glm4v"
    names = ("Config", "ForConditionalGeneration", "Processor", "ImageProcessor", "VideoProcessor")
    return tuple(getattr(tf, prefix + n) for n in names)


def make_config(tokenizer: Any, text: dict[str, Any], vision: dict[str, Any], arch: str = "glm46v") -> Any:
    """The architecture's config with the tokenizer's special-token ids (the vocabulary at least the
    tokenizer's)."""
    config_class = _classes(arch)[0]

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    rotary_half = head_dim // 4  # partial rotary factor 0.5, split over (t, h, w) like GLM's [8, 12, 12]
    section = [rotary_half // 4, (rotary_half - rotary_half // 4) // 2]
    section.append(rotary_half - sum(section))
    text_config = {
        **text,
        "pad_token_id": ids["<|endoftext|>"],
        "eos_token_id": [ids["<|endoftext|>"]],
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": section,
            "partial_rotary_factor": 0.5,
        },
    }
    text_config["vocab_size"] = max(len(tokenizer), text.get("vocab_size", 0))
    return config_class(
        text_config=text_config,
        vision_config=vision,
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"],
        image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"],
        video_end_token_id=ids["<|end_of_video|>"],
    )


def make_processor(tokenizer: Any, arch: str = "glm46v") -> Any:
    _, _, processor_class, image_class, video_class = _classes(arch)
    processor: Any = processor_class(
        image_processor=image_class(), tokenizer=tokenizer, video_processor=video_class(), chat_template=CHAT_TEMPLATE
    )
    return processor


def build(
    out: Path,
    *,
    text: dict[str, Any] | None = None,
    vision: dict[str, Any] | None = None,
    seed: int = 0,
    dtype: Any = None,
    arch: str = "glm46v",
) -> Path:
    """Write a random-weight checkpoint (tiny by default) that ``worker.vlm.loading.load`` reads."""
    import torch

    tokenizer = make_tokenizer()
    config = make_config(tokenizer, text or TINY_TEXT, vision or TINY_VISION, arch)
    torch.manual_seed(seed)
    model: Any = _classes(arch)[1](config)
    model = model.to(dtype or torch.float32).eval()
    model.save_pretrained(out)
    make_processor(tokenizer, arch).save_pretrained(out)
    return out
