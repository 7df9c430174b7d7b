"""Test images made here: every format the validator must accept, and the ones it must refuse."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def solid(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    return encode(Image.new("RGB", size, (200, 100, 50)), fmt)


def animated(fmt: str, frames: int) -> bytes:
    images = [Image.new("RGB", (32, 32), (i * 7 % 255, 80, 160)) for i in range(frames)]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=40, loop=0)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny file whose header claims billions of pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def scenes(seed: int, count: int, size: tuple[int, int] = (240, 240)) -> list[Image.Image]:
    """``count`` distinct frames of an animation: seeded random shapes on a random background (each frame a
    different picture, as in a reaction GIF's cuts, with the edges PDQ needs for a usable quality)."""
    import random

    from PIL import ImageDraw

    rng = random.Random(seed)
    frames = []
    for _ in range(count):
        frame = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))  # type: ignore[arg-type]
        draw = ImageDraw.Draw(frame)
        for _ in range(12):
            x, y = rng.randrange(size[0]), rng.randrange(size[1])
            box = (x, y, x + rng.randrange(20, 120), y + rng.randrange(20, 120))
            colour = tuple(rng.randrange(256) for _ in range(3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)  # type: ignore[arg-type]
        frames.append(frame)
    return frames


def animation(frames: list[Image.Image], fmt: str = "GIF", **kwargs: object) -> bytes:
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=80, loop=0, **kwargs)
