"""The OCR reader as it was before issue 20 (worker/ocr.py at commit 4336611), kept verbatim as the benchmarks'
reference so old and new code run side by side in one process on the same machine: RapidOCR's own pipeline,
its models as the wheel ships them, detection at RapidOCR's ``max`` limit (960 px for images under 960 px),
six text lines per recogniser call, one meme at a time."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from PIL import Image

MIN_SCORE = 0.5
MAX_SIDE = 1280
ENGINE_OPTIONS = {"use_cls": False, "det_limit_type": "max", "det_limit_side_len": 960}


class BaselineOcr:
    """Reads the text lines of meme frames, top to bottom, de-duplicated across animation frames."""

    def __init__(self, threads: int = -1) -> None:
        import numpy
        from rapidocr_onnxruntime import RapidOCR

        self._np: Any = numpy
        self._engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=threads, **ENGINE_OPTIONS)
        self._lock = threading.Lock()

    def read(self, frames: Sequence[Image.Image]) -> str:
        lines: list[str] = []
        for frame in frames:
            for line in self._read_frame(frame):
                if line not in lines:
                    lines.append(line)
        return "\n".join(lines)

    def _read_frame(self, frame: Image.Image) -> list[str]:
        frame = frame.copy()
        frame.thumbnail((MAX_SIDE, MAX_SIDE))
        with self._lock:
            result, _ = self._engine(self._np.asarray(frame.convert("RGB")))
        boxes = [(box[0][1], box[0][0], text) for box, text, score in result or [] if float(score) >= MIN_SCORE]
        return [text.strip() for _, _, text in sorted(boxes) if text.strip()]
