"""What must match besides the image before an earlier verdict is reused: the caption (the normalised text
in the image and around it). The image hashes themselves are ``banks.signals``' (one registry of types).
"""

from __future__ import annotations

import difflib

from worker.knowledge import SEPARATOR, normalize

MAX_CAPTION = 512
NEAR_CAPTION = 0.9


def joined_norm(ocr_text: str, post_text: str) -> str:
    return normalize(ocr_text) + SEPARATOR + normalize(post_text)


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
