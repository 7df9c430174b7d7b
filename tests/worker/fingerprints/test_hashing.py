"""PDQ + pHash on generated memes: which edits still match, and that a changed caption does not."""

from __future__ import annotations

import io

from PIL import Image

from banks.signals import MIN_QUALITY, compute, hash_frame
from memeguard.imaging import decode_frames
from worker.fingerprints.captions import caption, same_caption
from worker.samples import render_meme


def frame(text: str, template: str = "doge") -> Image.Image:
    return decode_frames(render_meme(text, template), 1)[0]


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return decode_frames(out.getvalue(), 1)[0]


def pdq_distance(a: Image.Image, b: Image.Image) -> int:
    return bin(hash_frame(a).pdq ^ hash_frame(b).pdq).count("1")


def test_reencoded_and_resized_memes_stay_within_the_pdq_distance() -> None:
    meme = frame("你说得对，但是原神是一款游戏")
    assert pdq_distance(meme, jpeg(meme, 30)) <= 10
    assert pdq_distance(meme, meme.resize((meme.width // 2, meme.height // 2))) <= 31


def test_a_changed_caption_is_far_in_pdq_but_close_in_phash() -> None:
    a, b = frame("你说得对，但是原神是一款游戏"), frame("今天天气真好")
    assert pdq_distance(a, b) > 31  # another meme
    assert bin(hash_frame(a).phash ^ hash_frame(b).phash).count("1") <= 16  # same template underneath


def test_flat_images_have_low_quality_and_are_not_matchable() -> None:
    hashes = hash_frame(Image.new("RGB", (300, 300), (120, 120, 120)))
    assert hashes.quality < MIN_QUALITY and not hashes.matchable
    assert [len(v) for v in compute([hashes]).values()] == [64, 16]


def test_exif_orientation_is_applied_before_hashing() -> None:
    meme = frame("你认真的？", "question")
    rotated = meme.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": undoes the counter-clockwise rotation above
    out = io.BytesIO()
    rotated.save(out, "JPEG", quality=95, exif=exif.tobytes())
    assert pdq_distance(meme, decode_frames(out.getvalue(), 1)[0]) <= 10


def test_captions_match_exactly_or_nearly_after_normalisation() -> None:
    assert same_caption(caption("你说得对，但是", ""), caption("你说得对 但是！", ""))
    assert same_caption(caption("你说得对但是原神是一款游戏啊", ""), caption("你说得对但是原神是一款游戏阿", ""))
    assert not same_caption(caption("你说得对但是", ""), caption("今天天气真好", ""))
    assert not same_caption(caption("笑死", "狗头"), caption("笑死", "垃圾"))  # post text counts too
    assert not same_caption(caption("嗨你再照会儿镜子好不好", "配文0"), caption("嗨你再照会儿镜子好不好", "配文7"))
