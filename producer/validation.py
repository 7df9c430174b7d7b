"""Upload validation: everything is checked before a job is enqueued, and every refusal names its code."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from PIL import Image

from memeguard.blobs import sha256_hex
from memeguard.imaging import (
    ALLOWED_TYPES,
    describe_unknown,
    frame_count,
    open_image,
    sniff_media_type,
    verify_frames,
)
from memeguard.schemas import Rejected
from memeguard.settings import Settings

# matched with fullmatch: a `$`-anchored ``match`` also accepts a trailing newline ("nl-dup\n" beside "nl-dup")
CONTENT_ID = re.compile(r"[\w.:@/+=-]{1,256}")
TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
CALLBACK_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f]{1,2000}")
MAX_CONTEXT_DEPTH = 32  # nesting levels of a context object: deeper is no metadata a platform sends
HTTP_STATUS = {
    "unsupported_type": 415,
    "too_large": 413,
    "too_many_pixels": 413,
    "corrupt_image": 422,
    "empty_upload": 422,
    "invalid_content_id": 422,
    "invalid_tenant": 422,
    "text_too_long": 422,
    "invalid_context": 422,
    "invalid_callback_url": 422,
    "content_id_conflict": 409,
    "invalid_text": 422,
}


class UploadRejected(Rejected):
    """A refused upload. ``code`` is stable (clients branch on it); ``message`` says why in words."""

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 422)


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int
    max_frames: int
    max_text_chars: int
    max_context_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            settings.max_upload_bytes,
            settings.max_pixels,
            settings.max_frames,
            settings.max_text_chars,
            settings.max_context_bytes,
        )


@dataclass(frozen=True)
class ValidatedImage:
    sha256: str
    media_type: str
    width: int
    height: int
    frames: int


def validate_image(data: bytes, limits: Limits, sha256: str | None = None) -> ValidatedImage:
    """Check type by magic bytes, byte size, pixel count (before decoding) and decodability.
    ``sha256`` saves hashing again when the caller already has it."""
    if not data:
        raise UploadRejected("empty_upload", "the upload has no bytes")
    if len(data) > limits.max_bytes:
        raise UploadRejected("too_large", f"{len(data)} bytes exceeds the limit of {limits.max_bytes}")
    media_type = sniff_media_type(data)
    if media_type is None:
        kind = describe_unknown(data)
        raise UploadRejected("unsupported_type", f"{kind} content; allowed: {', '.join(ALLOWED_TYPES)}")
    width, height, frames = _header(data)
    if width * height > limits.max_pixels:
        raise UploadRejected(
            "too_many_pixels", f"{width}x{height} = {width * height} pixels exceeds {limits.max_pixels}"
        )
    _decode(data, limits.max_frames)
    return ValidatedImage(sha256 or sha256_hex(data), media_type, width, height, frames)


def _header(data: bytes) -> tuple[int, int, int]:
    try:
        with open_image(data) as image:
            return image.width, image.height, frame_count(image)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise UploadRejected("corrupt_image", f"cannot read the image header: {exc}") from exc


def _decode(data: bytes, max_frames: int) -> None:
    """Decode the frames the analyzer will see, so truncated or corrupt files never reach a worker."""
    try:
        verify_frames(data, max_frames)
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise UploadRejected("corrupt_image", f"the image data is corrupt or truncated: {exc}") from exc


def validate_fields(
    tenant: str, content_id: str, post_text: str, context: Any, callback_url: str | None, limits: Limits
) -> dict[str, Any]:
    """Validate the non-image fields; returns the context as a dict."""
    if not TENANT.fullmatch(tenant):
        raise UploadRejected("invalid_tenant", f"tenant {tenant!r} must match {TENANT.pattern}")
    if not CONTENT_ID.fullmatch(content_id):
        raise UploadRejected("invalid_content_id", f"content_id must match {CONTENT_ID.pattern}")
    if len(post_text) > limits.max_text_chars:
        raise UploadRejected("text_too_long", f"post_text has {len(post_text)} characters, max {limits.max_text_chars}")
    if "\x00" in post_text:  # PostgreSQL text cannot hold NUL: refused here, not a 500 at the insert
        raise UploadRejected("invalid_text", "post_text must not contain NUL characters")
    if callback_url is not None and not CALLBACK_URL.fullmatch(callback_url):
        raise UploadRejected("invalid_callback_url", "callback_url must be an http(s) URL")
    return _context(context, limits.max_context_bytes)


def _context(context: Any, max_bytes: int) -> dict[str, Any]:
    if context in (None, ""):
        return {}
    if isinstance(context, str):
        if len(context.encode()) > max_bytes:  # before parsing: parsing is what costs
            raise UploadRejected("invalid_context", f"context exceeds {max_bytes} bytes")
        try:
            context = json.loads(context)
        except json.JSONDecodeError as exc:
            raise UploadRejected("invalid_context", f"context is not valid JSON: {exc.msg}") from exc
        except RecursionError as exc:
            raise UploadRejected("invalid_context", f"context nests deeper than {MAX_CONTEXT_DEPTH} levels") from exc
    if not isinstance(context, dict):
        raise UploadRejected("invalid_context", "context must be a JSON object")
    if _depth(context) > MAX_CONTEXT_DEPTH:
        raise UploadRejected("invalid_context", f"context nests deeper than {MAX_CONTEXT_DEPTH} levels")
    if len(json.dumps(context, ensure_ascii=False).encode()) > max_bytes:
        raise UploadRejected("invalid_context", f"context exceeds {max_bytes} bytes")
    return context


def _depth(value: Any) -> int:
    """How deeply a JSON value nests, without recursion (a hostile value may nest 100,000 levels)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_CONTEXT_DEPTH:
                stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
