"""The OCR reader: exact graph rewrites, the detector's scale, and batched reading equal to reading one by one."""

from __future__ import annotations

import io
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from memeguard.imaging import decode_frames
from worker.analyzers.base import AnalyzerError
from worker.knowledge import normalize
from worker.ocr import DETECTOR, RECOGNISERS, ChineseOcr, detector_side, fused_model, model_path
from worker.samples import find_cjk_font, render_meme

CAPTIONS = ["你说得对，但是这版本就是不行", "前方高能预警", "我破防了", "早上好，今天也要开心"]


@pytest.fixture(scope="module")
def ocr() -> ChineseOcr:
    return ChineseOcr(threads=1)


def frames(caption: str, **kwargs: object) -> list[Image.Image]:
    return decode_frames(render_meme(caption, **kwargs), 4)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (DETECTOR, (1, 3, 320, 288)),
        (RECOGNISERS["ppocrv4"], (2, 3, 48, 480)),
        (RECOGNISERS["ppocrv5"], (2, 3, 48, 480)),
    ],
)
def test_the_rewritten_graphs_compute_what_the_wheels_do(model: tuple[str, str], shape: tuple[int, ...]) -> None:
    """PP-OCRv4 spells hard-swish as four operators; PP-OCRv5's export passes tensors through Identity nodes and
    adds each convolution's bias as a reshaped constant: both end as fused convolutions, the same outputs."""
    import onnx
    import onnxruntime as ort

    original = model_path(model).read_bytes()
    rewritten = fused_model(model)
    ops = [node.op_type for node in onnx.load_from_string(rewritten).graph.node]
    assert "Clip" not in ops and "Identity" not in ops
    assert ops.count("Conv") == [n.op_type for n in onnx.load_from_string(original).graph.node].count("Conv")
    assert len(ops) < len(onnx.load_from_string(original).graph.node) * 0.6  # the element-wise chains are gone
    x = np.random.default_rng(7).uniform(-1, 1, shape).astype(np.float32)
    before, after = (ort.InferenceSession(m, providers=["CPUExecutionProvider"]) for m in (original, rewritten))
    expected = before.run(None, {before.get_inputs()[0].name: x})[0]
    got = after.run(None, {after.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("name", list(RECOGNISERS))
def test_the_recogniser_keeps_its_character_table(name: str) -> None:
    import onnx

    meta = {p.key: p.value for p in onnx.load_from_string(fused_model(RECOGNISERS[name])).metadata_props}
    assert "character" in meta and "的" in meta["character"]


def test_the_charset_is_what_the_recogniser_can_output(ocr: ChineseOcr) -> None:
    """Evaluations count text the OCR cannot read back. PP-OCRv5 writes traditional and evasive spellings
    PP-OCRv4 cannot (蝻, an evasive 男; 龜, traditional 龟); neither writes 畒."""
    older = ChineseOcr(threads=1, recogniser="ppocrv4")
    assert ocr.recogniser == "ppocrv5" and len(ocr.charset) > 2 * len(older.charset)
    assert {"的", "男", "蝻", "龜"} <= ocr.charset and "畒" not in ocr.charset
    assert "的" in older.charset and not {"蝻", "龜"} & older.charset


@pytest.mark.parametrize("caption", ["龜男又在吹牛", "蝻人都这样"])
def test_evasive_and_traditional_spellings_are_read_back(ocr: ChineseOcr, caption: str) -> None:
    """The characters an evasive spelling hides behind are read, not dropped (PP-OCRv4 lost them)."""
    assert ocr.read(frames(caption)) == caption


def test_an_unknown_recogniser_is_refused() -> None:
    with pytest.raises(AnalyzerError, match="unknown OCR recogniser 'ppocrv9'"):
        ChineseOcr(threads=1, recogniser="ppocrv9")


def test_a_missing_model_wheel_says_what_to_install() -> None:
    with pytest.raises(AnalyzerError, match=r"needs OCR \(no_such_wheel: models/x.onnx\).*memeguard\[cpu\]"):
        model_path(("no_such_wheel", "models/x.onnx"))


@pytest.mark.parametrize(
    ("longest", "side"), [(200, 320), (480, 320), (700, 350), (960, 480), (1280, 640), (4000, 960)]
)
def test_the_detector_reads_at_half_the_longest_side_within_bounds(longest: int, side: int) -> None:
    assert detector_side(longest) == side


@pytest.mark.parametrize("caption", ["如何歧视黒人", "男挙就是这样"])
def test_japanese_forms_read_back_as_the_text_path_normalises_them(ocr: ChineseOcr, caption: str) -> None:
    """Whether the OCR writes 黒 or 黑, 挙 or 拳, the text path maps both to one form, so the verdicts agree."""
    assert normalize(ocr.read(frames(caption))) == normalize(caption)


def test_reads_rendered_captions(ocr: ChineseOcr) -> None:
    for caption in CAPTIONS:
        assert ocr.read(frames(caption)).replace("\n", "") == caption


def test_small_text_on_a_large_canvas_is_still_read(ocr: ChineseOcr) -> None:
    """The detector's side follows the image: 22 px text on a 960 px meme is read at 480 px, not lost at 320."""
    assert ocr.read(frames("这个表情包的字很小但是要读出来", size=(960, 800), font_size=22)).replace("\n", "") == (
        "这个表情包的字很小但是要读出来"
    )


def test_a_thin_strip_is_letterboxed_and_read(ocr: ChineseOcr) -> None:
    font = ImageFont.truetype(str(find_cjk_font()), 20)
    strip = Image.new("RGB", (600, 28), "white")
    ImageDraw.Draw(strip).text((10, 2), "弹幕护体前方高能", font=font, fill="black")
    assert ocr.read([strip]) == "弹幕护体前方高能"


def test_a_batch_reads_what_each_meme_reads_alone(ocr: ChineseOcr) -> None:
    blank = Image.new("RGB", (320, 240), "white")
    animated = io.BytesIO()
    first, second = (decode_frames(render_meme(c), 1)[0] for c in ("第一帧的字", "第二帧的字"))
    first.save(animated, format="GIF", save_all=True, append_images=[second, first], duration=100)
    items = [frames(c) for c in CAPTIONS] + [[blank], decode_frames(animated.getvalue(), 4), []]
    alone = [ocr.read(item) for item in items]
    assert ocr.read_many(items) == alone
    assert alone[4] == "" and alone[5] == "第一帧的字\n第二帧的字" and alone[6] == ""


def test_batched_recognition_reads_the_same_lines() -> None:
    """Padding lines to the widest of a batch changes the cost, not the text (bench/ocr_readback.py)."""
    items = [frames(c) for c in CAPTIONS]
    assert ChineseOcr(threads=1, rec_batch=8).read_many(items) == ChineseOcr(threads=1, rec_batch=1).read_many(items)


def test_small_lines_are_detected_again_at_full_size(ocr: ChineseOcr, monkeypatch: pytest.MonkeyPatch) -> None:
    """Half the side reads large captions as well; small text is detected again at the image's own size."""
    sides: list[int] = []
    real = ocr._boxes_at
    monkeypatch.setattr(ocr, "_boxes_at", lambda image, side: sides.append(side) or real(image, side))
    ocr.read(frames("大字幕", size=(480, 400), font_size=34))
    assert sides == [320]
    sides.clear()
    ocr.read(frames("这个表情包的字很小但是要读出来", size=(960, 800), font_size=22))
    assert sides == [480, 960]


def test_the_setting_chooses_the_analyzers_recogniser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MEMEGUARD_OCR_RECOGNISER reaches the analyzer a worker builds; a name it does not know is refused."""
    from pydantic import ValidationError

    from memeguard.settings import Settings
    from worker.analyzers.embedded import EmbeddedAnalyzer

    monkeypatch.setenv("MEMEGUARD_OCR_RECOGNISER", "ppocrv4")
    analyzer = EmbeddedAnalyzer.default(Settings(data_dir=tmp_path))
    assert analyzer.read_image_text(frames("蝻人都这样")) != "蝻人都这样"  # PP-OCRv4 cannot write 蝻
    assert (
        EmbeddedAnalyzer.default(Settings(data_dir=tmp_path, ocr_recogniser="ppocrv5")).read_image_text(
            frames("蝻人都这样")
        )
        == "蝻人都这样"
    )
    assert set(get_args(Settings.model_fields["ocr_recogniser"].annotation)) == set(RECOGNISERS)  # no drift
    monkeypatch.setenv("MEMEGUARD_OCR_RECOGNISER", "tesseract")
    with pytest.raises(ValidationError, match="ocr_recogniser"):
        Settings(data_dir=tmp_path)
