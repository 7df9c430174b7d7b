"""Perceptual hashes of a meme: PDQ (256 bits + quality, the format platforms exchange) and pHash (64 bits).

Frames arrive decoded with EXIF orientation applied (``memeguard.imaging.decode_frames``); each is scaled
down so its longer side is at most ``MAX_SIDE`` before hashing (PDQ and pHash both work on a small
luminance image, so hashing a 4000 px upload at full size only costs time). Animated memes hash every
sampled frame. A PDQ quality below ``MIN_QUALITY`` (flat or nearly blank images) is not matched: such
hashes collide with each other.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from worker.knowledge import SEPARATOR, normalize

MAX_SIDE = 512
MIN_QUALITY = 50
PDQ_BITS, PHASH_BITS = 256, 64
MAX_CAPTION = 512
NEAR_CAPTION = 0.9


def joined_norm(ocr_text: str, post_text: str) -> str:
    return normalize(ocr_text) + SEPARATOR + normalize(post_text)


@dataclass(frozen=True)
class ImageHashes:
    """One frame's hashes as integers (hex: ``f"{pdq:064x}"``, ``f"{phash:016x}"``)."""

    pdq: int
    quality: int
    phash: int

    @property
    def matchable(self) -> bool:
        return self.quality >= MIN_QUALITY

    @property
    def pdq_hex(self) -> str:
        return f"{self.pdq:064x}"

    @property
    def phash_hex(self) -> str:
        return f"{self.phash:016x}"


def hash_frame(frame: Image.Image) -> ImageHashes:
    import imagehash
    import pdqhash

    small = frame.convert("RGB")
    small.thumbnail((MAX_SIDE, MAX_SIDE))
    bits, quality = pdqhash.compute(np.asarray(small))
    phash = imagehash.phash(small)
    return ImageHashes(_bits_to_int(bits), int(quality), _bits_to_int(phash.hash.flatten()))


def hash_frames(frames: Sequence[Image.Image]) -> list[ImageHashes]:
    return [hash_frame(frame) for frame in frames]


def caption(ocr_text: str, post_text: str) -> str:
    """What must match besides the image: the normalised text in the image and around it."""
    return joined_norm(ocr_text, post_text)[:MAX_CAPTION]


def same_caption(a: str, b: str) -> bool:
    """The post text must be equal (it is typed, not read); the text in the image equal or near (OCR noise:
    similarity >= NEAR_CAPTION). A changed caption is a different meme even on the same template."""
    a_ocr, _, a_post = a.partition(SEPARATOR)
    b_ocr, _, b_post = b.partition(SEPARATOR)
    if a_post != b_post:
        return False
    if a_ocr == b_ocr:
        return True
    return bool(a_ocr and b_ocr) and difflib.SequenceMatcher(None, a_ocr, b_ocr, autojunk=False).ratio() >= NEAR_CAPTION


def _bits_to_int(bits: np.ndarray) -> int:
    return int("".join("1" if b else "0" for b in np.asarray(bits).ravel()), 2)
