"""Generated sample memes: a cartoon face template and a Chinese caption rendered with a CJK font.

Used by the demo, the tests and the benchmarks, so OCR always reads real rendered Chinese text.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
TEMPLATES = ("doge", "panda", "crying_cat", "question", "plain")
FONT_SIZE = 34  # the captions' size in a sample meme


def find_cjk_font() -> Path:
    """A font that renders Chinese (``MEMEGUARD_CJK_FONT`` first, then the usual Debian paths); without one,
    captions would render as boxes, so fail loudly."""
    override = os.environ.get("MEMEGUARD_CJK_FONT")
    if override:
        if not Path(override).is_file():
            raise FileNotFoundError(f"MEMEGUARD_CJK_FONT={override!r} is not a file")
        return Path(override)
    for candidate in FONT_CANDIDATES:
        if Path(candidate).exists():
            return Path(candidate)
    raise FileNotFoundError("no CJK font found: install Debian's fonts-wqy-microhei (`make demo` does)")


def _face(draw: ImageDraw.ImageDraw, template: str, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    colours = {
        "doge": (222, 184, 120),
        "panda": (245, 245, 245),
        "crying_cat": (250, 220, 160),
        "question": (90, 60, 40),
        "plain": (200, 200, 200),
    }
    draw.ellipse(box, fill=colours.get(template, (200, 200, 200)), outline="black", width=4)
    ex, ey = (x1 - x0) // 4, (y1 - y0) // 3
    eye = (0, 0, 0) if template != "question" else (255, 255, 255)
    for cx in (x0 + ex, x1 - ex):
        draw.ellipse((cx - 12, y0 + ey - 12, cx + 12, y0 + ey + 12), fill=eye)
    if template == "crying_cat":
        for cx in (x0 + ex, x1 - ex):
            draw.rectangle((cx - 5, y0 + ey + 12, cx + 5, y1 - 20), fill=(80, 150, 255))
    if template == "panda":
        for cx in (x0 + ex, x1 - ex):
            draw.ellipse((cx - 22, y0 + ey - 22, cx + 22, y0 + ey + 22), outline="black", width=8)


def render_meme(
    caption: str,
    template: str = "plain",
    size: tuple[int, int] = (480, 400),
    fmt: str = "PNG",
    font_size: int = FONT_SIZE,
    seed_colour: int = 0,
) -> bytes:
    """A meme image: a face template on top, the caption (wrapped) below; the canvas grows downwards when
    the caption needs more lines than ``size`` holds. Returns encoded bytes."""
    width = size[0]
    font = _font(str(find_cjk_font()), font_size)
    lines = _wrap(ImageDraw.Draw(Image.new("RGB", (1, 1))), drawable(caption, font), font, width - 40)
    height = max(size[1], 220 + len(lines) * (font_size + 10) + 20)
    image = Image.new("RGB", (width, height), (255, 255 - seed_colour % 50, 255))
    draw = ImageDraw.Draw(image)
    _face(draw, template, (width // 2 - 90, 20, width // 2 + 90, 200))
    y = 220
    for line in lines:
        line_width = draw.textlength(line, font=font)
        draw.text(((width - line_width) / 2, y), line, font=font, fill="black")
        y += font_size + 10
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def drawn_text(caption: str, font_size: int = FONT_SIZE) -> str:
    """The caption as :func:`render_meme` draws it: without the characters the font has no glyph for. A
    rendered sample holds this text, not the caption — what an OCR read-back can be compared with."""
    return drawable(caption, _font(str(find_cjk_font()), font_size))


@lru_cache(maxsize=8)
def _font(path: str, size: int) -> Any:
    """A loaded font, kept: evaluations render and compare thousands of captions with the same one."""
    return ImageFont.truetype(path, size)


NO_GLYPH = "\U0010fffd"  # a private-use code point no font draws: what the font draws for a missing glyph


def drawable(text: str, font: Any) -> str:
    """``text`` without the characters the font has no glyph for (emoji, in a CJK text font). Drawn, each would
    be the font's empty box, which OCR reads back as the character 口 — text the caption never held."""
    missing = _mask(font, NO_GLYPH)
    return "".join(c for c in text if c.isspace() or c.isascii() or _mask(font, c) != missing)


def _mask(font: Any, char: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(char)
    return mask.size, bytes(mask)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, max_width: int) -> list[str]:
    lines, current = [], ""
    for char in text:
        if char == "\n" or draw.textlength(current + char, font=font) > max_width:
            lines.append(current)
            current = "" if char == "\n" else char
        else:
            current += char
    return [line for line in [*lines, current] if line]


@dataclass(frozen=True)
class SampleMeme:
    content_id: str
    caption: str
    template: str
    post_text: str = ""
    context: dict[str, Any] = field(default_factory=dict)

    def image(self) -> bytes:
        return render_meme(self.caption, self.template)


DEMO_MEMES = (
    SampleMeme("demo-sarcasm", "你说得对，但是这版本就是不行", "doge", "手动狗头"),
    SampleMeme("demo-highlight", "前方高能预警", "panda", "", {"scene": "弹幕"}),
    SampleMeme("demo-disbelief", "你认真的？", "question"),
    SampleMeme("demo-complaint", "我破防了", "crying_cat", "快递还没到，客服不回", {"scene": "customer_service"}),
    SampleMeme("demo-humor", "笑死我了", "doge", "狗头保命"),
    SampleMeme("demo-insult", "你个sb赶紧去死", "plain"),
    SampleMeme("demo-dispirited", "不想活了，毁灭吧", "crying_cat"),
    SampleMeme("demo-greeting", "早上好，今天也要开心", "plain"),
)
