"""Sample memes need a CJK font: found on the usual paths, or named by MEMEGUARD_CJK_FONT (machines where the
font lives elsewhere, e.g. a GPU box without Debian's package)."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.samples import FONT_CANDIDATES, find_cjk_font, render_meme


def test_an_explicit_font_path_wins_and_a_wrong_one_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = next(Path(c) for c in FONT_CANDIDATES if Path(c).exists())
    copy = tmp_path / "font.ttc"
    copy.write_bytes(installed.read_bytes())
    monkeypatch.setenv("MEMEGUARD_CJK_FONT", str(copy))
    assert find_cjk_font() == copy and render_meme("你说得对", "doge").startswith(b"\x89PNG")
    monkeypatch.setenv("MEMEGUARD_CJK_FONT", str(tmp_path / "missing.ttc"))
    with pytest.raises(FileNotFoundError, match="MEMEGUARD_CJK_FONT"):
        find_cjk_font()


def test_characters_the_font_cannot_draw_are_left_out_not_drawn_as_boxes() -> None:
    from PIL import ImageFont

    from worker.samples import drawable, find_cjk_font

    font = ImageFont.truetype(str(find_cjk_font()), 34)
    # an emoji drawn in a CJK text font is an empty box, which OCR reads back as 口
    assert drawable("就是种族歧视🐶😅 ok，粿籹", font) == "就是种族歧视 ok，粿籹"


def test_drawn_text_is_what_a_rendered_sample_holds() -> None:
    """The render-agreement reference: a rendered sample holds the caption without its undrawable characters."""
    from worker.samples import drawn_text

    assert drawn_text("炸🐔 好吃") == "炸 好吃"
    assert drawn_text("地域黑要不得，哪里都有好人坏人") == "地域黑要不得，哪里都有好人坏人"
