"""Image sniffing and bounded decoding, shared by upload validation and the analyzers.

The media type is decided by magic bytes, never by file name or client-declared type; sizes are read from
the header before any pixel is decoded, so a decompression bomb is refused without being expanded.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, ImageOps

ALLOWED_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def sniff_media_type(data: bytes) -> str | None:
    """The allow-listed media type of ``data`` by its magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def describe_unknown(data: bytes) -> str:
    """A human hint for a refused type (SVG and friends are named explicitly)."""
    head = data[:512].lstrip().lower()
    if head.startswith(b"<?xml") or b"<svg" in head:
        return "SVG"
    if head.startswith(b"%pdf"):
        return "PDF"
    if data[:2] == b"BM":
        return "BMP"
    if data[4:12] in (b"ftypheic", b"ftypavif", b"ftypmif1"):
        return "HEIC/AVIF"
    return "unknown"


@contextmanager
def open_image(data: bytes) -> Iterator[Image.Image]:
    """Open without decoding pixels; PIL's own bomb check is disabled because callers check size first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(io.BytesIO(data)) as image:
                yield image
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def frame_count(image: Image.Image) -> int:
    return int(getattr(image, "n_frames", 1))


def sample_indices(total: int, limit: int) -> list[int]:
    """At most ``limit`` frame indices spread evenly over an animation, always including the first."""
    if total <= limit:
        return list(range(total))
    step = total / limit
    return sorted({int(i * step) for i in range(limit)})


def verify_frames(data: bytes, max_frames: int) -> None:
    """Decode the sampled frames without keeping them: raises OSError/ValueError on corrupt data."""
    with open_image(data) as image:
        for index in sample_indices(frame_count(image), max_frames):
            image.seek(index)
            image.load()


def decode_frames(data: bytes, max_frames: int) -> list[Image.Image]:
    """Decode the sampled frames as RGB, EXIF orientation applied. Raises OSError on corrupt data."""
    frames: list[Image.Image] = []
    with open_image(data) as image:
        for index in sample_indices(frame_count(image), max_frames):
            image.seek(index)
            frame = ImageOps.exif_transpose(image.convert("RGB")) if index == 0 else image.convert("RGB")
            frames.append(frame)
    return frames
