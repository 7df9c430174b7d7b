from __future__ import annotations

import pytest

from producer.validation import Limits, UploadRejected, validate_fields, validate_image
from tests.helpers.images import SVG, animated, png_bomb, solid

LIMITS = Limits(max_bytes=2_000_000, max_pixels=4_000_000, max_frames=4, max_text_chars=50, max_context_bytes=64)


@pytest.mark.parametrize(
    ("fmt", "media_type"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("GIF", "image/gif"), ("WEBP", "image/webp")]
)
def test_allowed_types_pass_and_are_decided_by_content(fmt: str, media_type: str) -> None:
    image = validate_image(solid(fmt), LIMITS)
    assert (image.media_type, image.width, image.height, image.frames) == (media_type, 64, 48, 1)
    assert len(image.sha256) == 64


def rejected(data: bytes, limits: Limits = LIMITS) -> UploadRejected:
    with pytest.raises(UploadRejected) as info:
        validate_image(data, limits)
    return info.value


@pytest.mark.parametrize(
    ("data", "kind"),
    [(SVG, "SVG"), (solid("BMP"), "BMP"), (b"%PDF-1.7 ...", "PDF"), (b"hello world, not an image", "unknown")],
)
def test_other_types_are_unsupported(data: bytes, kind: str) -> None:
    error = rejected(data)
    assert error.code == "unsupported_type" and kind in error.message and error.http_status == 415


def test_too_large_by_bytes() -> None:
    error = rejected(solid("PNG"), Limits(100, 10**6, 4, 50, 64))
    assert error.code == "too_large" and error.http_status == 413


def test_decompression_bomb_is_refused_from_the_header() -> None:
    error = rejected(png_bomb())
    assert error.code == "too_many_pixels"
    assert "50000x50000" in error.message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_truncated_images_are_corrupt(fmt: str) -> None:
    data = solid(fmt, (300, 300))
    assert rejected(data[: len(data) // 2]).code == "corrupt_image"


def test_garbage_after_magic_bytes_is_corrupt() -> None:
    assert rejected(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100).code == "corrupt_image"


def test_empty_upload() -> None:
    assert rejected(b"").code == "empty_upload"


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_are_accepted_with_their_frame_count(fmt: str) -> None:
    assert validate_image(animated(fmt, 12), LIMITS).frames == 12


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"tenant": "Bad Tenant"}, "invalid_tenant"),
        ({"content_id": ""}, "invalid_content_id"),
        ({"content_id": "a b"}, "invalid_content_id"),
        ({"post_text": "字" * 51}, "text_too_long"),
        ({"context": "{not json"}, "invalid_context"),
        ({"context": "[1, 2]"}, "invalid_context"),
        ({"context": {"x": "y" * 100}}, "invalid_context"),
        ({"callback_url": "ftp://example.com/x"}, "invalid_callback_url"),
    ],
)
def test_field_rejections(kwargs: dict[str, object], code: str) -> None:
    fields: dict[str, object] = {
        "tenant": "acme",
        "content_id": "c1",
        "post_text": "",
        "context": None,
        "callback_url": None,
    }
    fields.update(kwargs)
    with pytest.raises(UploadRejected) as info:
        validate_fields(limits=LIMITS, **fields)  # type: ignore[arg-type]
    assert info.value.code == code


def test_context_json_string_is_parsed() -> None:
    assert validate_fields("acme", "c1", "", '{"scene": "弹幕"}', None, LIMITS) == {"scene": "弹幕"}


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"content_id": "nl-dup\n"}, "invalid_content_id"),  # a $-anchored match let the newline through
        ({"tenant": "acme\n"}, "invalid_tenant"),
        ({"callback_url": "https://example.com/hook\n"}, "invalid_callback_url"),
        ({"callback_url": "https://example.com/\x00hook"}, "invalid_callback_url"),
        ({"post_text": "早上好\x00"}, "invalid_text"),  # PostgreSQL text cannot hold NUL: a 500 at the insert before
    ],
)
def test_trailing_newlines_and_nul_characters_are_refused(kwargs: dict[str, object], code: str) -> None:
    test_field_rejections(kwargs, code)


def test_a_deeply_nested_context_is_refused_not_a_recursion_error() -> None:
    roomy = Limits(
        max_bytes=2_000_000, max_pixels=4_000_000, max_frames=4, max_text_chars=50, max_context_bytes=1_000_000
    )
    for hostile in ("[" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000):
        with pytest.raises(UploadRejected) as info:
            validate_fields("acme", "c1", "", hostile, None, roomy)
        assert info.value.code == "invalid_context"
    nested: dict[str, object] = {}
    inner = nested
    for _ in range(40):
        inner["x"] = {}
        inner = inner["x"]  # type: ignore[assignment]
    with pytest.raises(UploadRejected, match="deeper than 32"):
        validate_fields("acme", "c1", "", nested, None, roomy)
    assert validate_fields("acme", "c1", "", {"a": {"b": [1, {"c": 2}]}}, None, roomy) == {"a": {"b": [1, {"c": 2}]}}
