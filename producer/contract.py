"""The HTTP API's contract: response models, the one error table, and the webhook payloads.

A platform engineer integrates from the OpenAPI document alone, so everything the API answers is declared
here: each endpoint's success model, each error status it can answer (with an example per code), the
``:stream`` media type and the callbacks (the document's ``webhooks``). ``ERRORS`` is the single table of
codes; the README's table and the schemathesis run check against it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from memeguard.schemas import JobStatus, ModerationAction, Verdict

# code -> (HTTP status, an example message); :stream lines carry these codes too
ERRORS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "the request could not be read"),
    "unauthorized": (401, "missing or unknown API key"),
    "tenant_mismatch": (403, "this API key does not belong to tenant 'tenant-b'"),
    "banks_disabled": (403, "no MEMEGUARD_ADMIN_API_KEY configured"),
    "not_found": (404, "no such job for this tenant"),
    "method_not_allowed": (405, "Method Not Allowed"),
    "content_id_conflict": (409, "content id 'post-1' was already used for other bytes"),
    "appeal_open": (409, "this job already has an open appeal"),
    "not_finished": (409, "the job has no action yet"),
    "conflict": (409, "the item changed meanwhile"),
    "bank_refused": (422, "a bank of that name exists"),
    "too_large": (413, "12582912 bytes exceeds the limit of 10485760"),
    "too_many_pixels": (413, "30000000 pixels exceeds the limit of 25000000"),
    "too_many_items": (413, "300 items; max 256"),
    "unsupported_type": (415, "image/svg+xml is not accepted; send JPEG, PNG, GIF or WebP"),
    "unsupported_media_type": (415, "send multipart/form-data"),
    "invalid_request": (422, "the request does not fit this endpoint"),
    "corrupt_image": (422, "the image cannot be decoded"),
    "empty_upload": (422, "the image is empty"),
    "invalid_content_id": (422, "content_id must be 1-128 characters of A-Z a-z 0-9 . _ : -"),
    "invalid_tenant": (422, "invalid tenant name"),
    "invalid_text": (422, "post_text contains a NUL character"),
    "invalid_context": (422, "context must be a JSON object of at most 4096 bytes"),
    "text_too_long": (422, "post_text has 2500 characters; max 2000"),
    "invalid_callback_url": (422, "callback_url must use https"),
    "invalid_encoding": (422, "image_base64 is not valid base64"),
    "rate_limited": (429, "more than 50 per 1 second requests for tenant 'tenant-a'"),
    "quota_exceeded": (429, "upload quota of 100000 per 1 day reached for tenant 'tenant-a'"),
    "queue_full": (429, "tenant 'tenant-a' has 10000 or more jobs waiting; retry when some are done"),
    "internal_error": (500, "an unforeseen failure (logged with its traceback)"),
    "queue_unavailable": (503, "the queue is unreachable"),
    "database_unavailable": (503, "the database is unreachable; retry later"),
}
# codes only a :stream result line carries (the response itself is 200)
STREAM_LINE_CODES = {"invalid_line": "not a valid item", "line_too_large": "the line exceeds 14000000 bytes"}

# every endpoint that takes a key can answer these
AUTH_CODES = ("unauthorized", "tenant_mismatch", "invalid_request", "rate_limited", "database_unavailable")
UPLOAD_CODES = (
    *AUTH_CODES,
    "too_large",
    "too_many_pixels",
    "unsupported_type",
    "corrupt_image",
    "empty_upload",
    "invalid_content_id",
    "invalid_text",
    "invalid_context",
    "text_too_long",
    "invalid_callback_url",
    "content_id_conflict",
    "quota_exceeded",
    "queue_full",
    "queue_unavailable",
    "bad_request",
)


class FieldError(BaseModel):
    location: str
    reason: str


class ErrorOut(BaseModel):
    """Every 4xx/5xx answer."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="the stable code (README, 'Error codes')")
    message: str = Field(description="why, in words")
    fields: list[FieldError] | None = Field(default=None, description="for invalid_request: each field's problem")


class RejectionOut(ErrorOut):
    """A refused upload; stored as a ``rejected`` job unless its content id itself is invalid."""

    content_id: str
    job_id: str | None
    http_status: int = Field(description="the status this upload answers (for an item of a batch or stream)")


class JobRefOut(BaseModel):
    job_id: str
    content_id: str
    status: JobStatus
    created: bool = Field(description="false when the content id was already known: the same job")


class VerdictOut(Verdict):
    """The verdict with its Chinese labels."""

    emotion_zh: str = Field(examples=["好笑"])
    intent_zh: str = Field(examples=["讽刺"])
    harm_type_zh: str = Field(examples=["无害"])


class ActionOut(BaseModel):
    action: ModerationAction = Field(description="allow / throttle (限流) / tag (打标) / block (拦截)")
    policy: str = Field(examples=["default@3"], description="policy name@version")
    rule_id: str
    reason: str
    source: str = Field(description="policy, or review when a reviewer set it")


class JobErrorOut(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    job_id: str
    tenant: str
    content_id: str
    status: JobStatus
    error: JobErrorOut | None
    verdict: VerdictOut | None
    action: ActionOut | None
    timings: dict[str, Any] = Field(description="per-stage milliseconds (hash_ms, ocr_ms, …)")
    attempts: int
    created_at: datetime
    finished_at: datetime | None
    handed_off_at: datetime | None = Field(description="set once the GPU tier of a two-queue fleet has the job")


class BatchOut(BaseModel):
    results: list[JobRefOut | RejectionOut] = Field(description="one per item, in order")
    accepted: int
    rejected: int


class AppealOut(BaseModel):
    appeal_id: int
    job_id: str
    status: str = Field(examples=["open"])


class ActionCallback(BaseModel):
    """``X-Memeguard-Event: action`` — POSTed to the job's ``callback_url`` when its action is set or a
    reviewer changes it. Headers: ``webhook-id`` (the same on every retry), ``webhook-timestamp``,
    ``webhook-signature`` (Standard Webhooks: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``) and, for
    one release, ``X-Memeguard-Signature``. Answer 2xx; anything else is retried with backoff."""

    event: str = Field(examples=["action"])
    job_id: str
    tenant: str
    content_id: str
    action: ModerationAction
    at: datetime
    policy: str | None = Field(default=None, description="set by the policy: name@version")
    rule_id: str | None = None
    harm_type: str | None = None
    confidence: float | None = None
    source: str | None = Field(default=None, description="review: a reviewer changed the action")
    reason: str | None = None


class AppealCallback(BaseModel):
    """``X-Memeguard-Event: appeal`` — a decided appeal, changed or not, signed like the action callback."""

    event: str = Field(examples=["appeal"])
    job_id: str
    tenant: str
    content_id: str
    at: datetime
    appeal_ids: list[int]
    outcome: str = Field(examples=["upheld", "overturned"])
    action: ModerationAction
    reason: str


def errors(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for ``codes``: one entry per status, an example per code."""
    by_status: dict[int, dict[str, Any]] = {}
    for code in codes:
        status, message = ERRORS[code]
        entry = by_status.setdefault(
            status, {"model": ErrorOut, "description": "", "content": {"application/json": {"examples": {}}}}
        )
        entry["content"]["application/json"]["examples"][code] = {"value": {"error": code, "message": message}}
        entry["description"] = ", ".join(filter(None, [entry["description"], f"`{code}`"]))
    for status, entry in by_status.items():
        if status in (429, 503):
            entry["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return dict(by_status.items())
