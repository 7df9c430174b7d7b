"""The HTTP ingestion API (FastAPI; OpenAPI docs at /docs).

One API key per tenant; a tenant never sees another tenant's jobs (unknown and foreign ids are both 404).
Validation happens before anything is enqueued, and every refusal carries a stable error code.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa_exc
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from jobs import store
from jobs.payloads import job_json
from memeguard import __version__
from memeguard.metrics import BATCH_SIZE, build_registry, render
from memeguard.queue import QueueUnavailable
from producer.banks_api import router as banks_router
from producer.body_limits import FORM_OVERHEAD, BodyCaps, BodyLimit
from producer.contract import (
    AUTH_CODES,
    UPLOAD_CODES,
    ActionCallback,
    AppealCallback,
    AppealOut,
    BatchOut,
    JobOut,
    JobRefOut,
    errors,
)
from producer.deps import ApiServices
from producer.quotas import Limited, Quotas
from producer.request_metrics import RequestMetrics
from producer.service import JobRef, Rejection, Submission
from review import reviews
from review.reviews import ReviewError

log = logging.getLogger(__name__)

POLL_S = 0.05
router = APIRouter()


# what the producer's validation checks, declared (not enforced here: the producer's refusal carries the
# specific code, and a refused upload is stored as a rejected job)
CONTENT_ID_SCHEMA: dict[str, Any] = {"pattern": r"^[\w.:@/+=-]{1,256}$", "minLength": 1, "maxLength": 256}
POST_TEXT_SCHEMA: dict[str, Any] = {"maxLength": 2000, "pattern": "^[^\\x00]*$"}
CONTEXT_SCHEMA: dict[str, Any] = {
    "contentMediaType": "application/json",
    "maxLength": 4096,
    "description": "a JSON object (the post's context), at most MEMEGUARD_MAX_CONTEXT_BYTES",
}
CALLBACK_SCHEMA: dict[str, Any] = {"format": "uri", "pattern": "^https?://[^\\s]+$", "maxLength": 2048}


class BatchItem(BaseModel):
    """One upload of a batch or stream. Its fields follow the rules of ``POST /v1/jobs``, but an item that
    breaks them is answered in its own result (with its code), never by refusing the whole request."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently dropped
    content_id: str = Field(description="1-256 of letters, digits and . : @ / + = - _")
    image_base64: str = Field(description="the image bytes (JPEG, PNG, GIF or WebP), base64-encoded")
    post_text: str = Field(default="", description="at most MEMEGUARD_MAX_TEXT_CHARS characters, no NUL")
    context: dict[str, Any] | None = None
    callback_url: str | None = Field(default=None, description="an https URL to a public address")


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[BatchItem]


# any body with a line is taken: each line is answered on its own (one that is not a BatchItem gets
# ``invalid_line``); a body without any line is refused
STREAM_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "one BatchItem JSON object per line",
        "content": {
            "application/x-ndjson": {
                "schema": {"type": "string", "pattern": "\\S"},
                "x-item-schema": {"$ref": "#/components/schemas/BatchItem"},
            }
        },
    }
}


def create_app(services: ApiServices) -> FastAPI:
    """Build the API around a services. Refuses to start without API keys: no key, no access."""
    if not services.settings.api_keys:
        raise ValueError('no API keys configured: set MEMEGUARD_API_KEYS=\'{"tenant": "<key>"}\'')
    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the installed package, not a CDN
    app = FastAPIOffline(title="memeguard ingestion API", version=__version__, description=DESCRIPTION)
    app.state.services = services
    app.state.registry = build_registry(services.queue.depths, services.queue_ages, services.ops_collectors())
    app.state.quotas = _quotas(services)
    app.add_middleware(BodyLimit, caps=_body_caps(services))
    app.add_middleware(RequestMetrics)
    app.add_exception_handler(QueueUnavailable, _queue_down)  # type: ignore[arg-type]
    app.add_exception_handler(sa_exc.DBAPIError, _database_down)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(ReviewError, _review_refused)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(router)
    app.webhooks.post("action", summary="A job's action was set or changed")(_action_webhook)
    app.webhooks.post("appeal", summary="An appeal was decided")(_appeal_webhook)
    app.include_router(banks_router)
    return app


def _quotas(services: ApiServices) -> Quotas:
    def count_queued(tenant: str) -> int:
        with services.sessions() as session:
            return store.count_queued(session, tenant)

    return Quotas(services.settings, count_queued)


def _body_caps(services: ApiServices) -> BodyCaps:
    s = services.settings
    # up to twice the image limit is still read, so an image somewhat too large gets its stored ``too_large``
    # rejection (with its real size); past that the body is cut off while it arrives
    upload = 2 * s.max_upload_bytes + 4 * s.max_text_chars + s.max_context_bytes + FORM_OVERHEAD
    return BodyCaps(upload=upload, batch=s.max_batch_bytes, default=s.max_body_bytes)


DESCRIPTION = """Submit memes for moderation; read verdicts and actions.

Every error answers `{"error": CODE, "message": ...}`; the codes are stable and each endpoint declares
the ones it can answer. 429 and 503 carry `Retry-After`: retrying an upload is safe, uploads are idempotent
by content id. Callbacks are described under *webhooks* and signed the Standard Webhooks way."""


def _action_webhook(body: ActionCallback) -> None:
    """POSTed to the job's ``callback_url``; answer 2xx (anything else is retried with backoff)."""


def _appeal_webhook(body: AppealCallback) -> None:
    """POSTed to the job's ``callback_url`` when a reviewer decides its appeal."""


def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    """The last resort: an unforeseen failure still answers the one error shape (logged with its traceback)."""
    log.error("unhandled error", exc_info=exc)
    return JSONResponse(
        {"error": "internal_error", "message": f"an unforeseen failure ({type(exc).__name__})"}, status_code=500
    )


def _queue_down(_: Request, exc: QueueUnavailable) -> JSONResponse:
    return JSONResponse({"error": "queue_unavailable", "message": str(exc)}, status_code=503)


def _database_down(_: Request, exc: sa_exc.DBAPIError) -> JSONResponse:
    """The database refused or dropped the request's connection (pre-ping already replaced a dead pooled
    one): a 503 with a code the client retries on, never a bare 500."""
    log.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else type(exc).__name__)
    return JSONResponse(
        {"error": "database_unavailable", "message": "the database is unreachable; retry later"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


# the code of an error the framework raises itself (unknown route, wrong method …), by status
FRAMEWORK_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Every HTTP error as ``{"error": CODE, "message": …}``: ours carry their code, the framework's (an
    unknown route, a wrong method, an unparseable body) get one by status."""
    if isinstance(exc.detail, dict):
        body = exc.detail
    else:
        body = {"error": FRAMEWORK_CODES.get(exc.status_code, "http_error"), "message": str(exc.detail)}
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:  # Starlette names only the first matching route's methods
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return JSONResponse(body, status_code=exc.status_code, headers=headers or None)


def _review_refused(request: Request, exc: ReviewError) -> JSONResponse:
    """A review step the domain refused (``review.reviews.ReviewError``), in the API's error shape with the
    error's own status and code — the API's one translation (the console's is ``console.web.ConsoleRoute``)."""
    return JSONResponse({"error": exc.code, "message": str(exc)}, status_code=exc.status)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (the ``Allow`` header of a 405)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """A request whose fields or body do not fit the endpoint: 422 ``invalid_request`` with each field's
    location and reason (never the input echoed back: it may be megabytes, or secret)."""
    fields = [
        {"location": ".".join(str(p) for p in error.get("loc", ())), "reason": str(error.get("msg", ""))}
        for error in exc.errors()
    ][:20]
    return JSONResponse(
        {"error": "invalid_request", "message": "the request does not fit this endpoint", "fields": fields},
        status_code=422,
    )


def services_of(request: Request) -> ApiServices:
    services: ApiServices = request.app.state.services
    return services


# declared security schemes: the OpenAPI document names both ways to present a key (and /docs gets an
# Authorize button); neither refuses by itself, tenant_of decides
BEARER = HTTPBearer(auto_error=False, description="the tenant's API key as a bearer token")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the tenant's API key")


def tenant_of(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    x_api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
    x_memeguard_tenant: Annotated[str | None, Header()] = None,
) -> str:
    """The tenant owning the presented API key (constant-time comparison); 401 otherwise. A client that
    names its tenant (``X-Memeguard-Tenant``) gets 403 if the key belongs to another: a misconfigured
    pipeline fails loudly instead of filing uploads under the wrong platform."""
    tenant = services_of(request).settings.tenant_for_key(x_api_key or (bearer.credentials if bearer else ""))
    if tenant is None:
        raise HTTPException(
            401,
            {"error": "unauthorized", "message": "missing or unknown API key"},
            headers={"WWW-Authenticate": "Bearer"},
        )
    if x_memeguard_tenant is not None and x_memeguard_tenant != tenant:
        raise HTTPException(
            403,
            {"error": "tenant_mismatch", "message": f"this API key does not belong to tenant {x_memeguard_tenant!r}"},
        )
    quotas_of(request).request(tenant)
    return tenant


def quotas_of(request: Request) -> Quotas:
    quotas: Quotas = request.app.state.quotas
    return quotas


Tenant = Annotated[str, Depends(tenant_of)]
Svc = Annotated[ApiServices, Depends(services_of)]
Qs = Annotated[Quotas, Depends(quotas_of)]


def _submission(item: BatchItem) -> Submission:
    """A JSON item as a submission; undecodable base64 becomes a pre-decided ``invalid_encoding``."""
    try:
        data, invalid = base64.b64decode(item.image_base64, validate=True), None
    except (binascii.Error, ValueError):
        data, invalid = b"", ("invalid_encoding", "image_base64 is not valid base64")
    return Submission(data, item.content_id, item.post_text, item.context, item.callback_url, invalid)


def _ref_json(ref: JobRef) -> dict[str, Any]:
    return {"job_id": str(ref.job_id), "content_id": ref.content_id, "status": ref.status.value, "created": ref.created}


def _rejection_json(rej: Rejection) -> dict[str, Any]:
    return {
        "error": rej.code,
        "message": rej.message,
        "content_id": rej.content_id,
        "job_id": str(rej.job_id) if rej.job_id else None,
        "http_status": rej.http_status,
    }


def _created(results: list[JobRef | Rejection]) -> int:
    return sum(isinstance(r, JobRef) and r.created for r in results)


def _result_json(result: JobRef | Rejection) -> dict[str, Any]:
    return _ref_json(result) if isinstance(result, JobRef) else _rejection_json(result)


@router.post(
    "/v1/jobs",
    status_code=201,
    summary="Submit one meme (multipart)",
    response_model=JobRefOut,
    responses={
        200: {"model": JobRefOut, "description": "the content id was known: the same job"},
        **errors(*UPLOAD_CODES),
    },
)
def create_job(
    tenant: Tenant,
    services: Svc,
    quotas: Qs,
    image: Annotated[UploadFile, File(description="JPEG, PNG, GIF or WebP (decided by magic bytes)")],
    content_id: Annotated[str, Form(json_schema_extra=CONTENT_ID_SCHEMA)],
    post_text: Annotated[str, Form(json_schema_extra=POST_TEXT_SCHEMA)] = "",
    context: Annotated[str, Form(json_schema_extra=CONTEXT_SCHEMA)] = "",
    callback_url: Annotated[str, Form(json_schema_extra=CALLBACK_SCHEMA)] = "",
) -> JSONResponse:
    limit = services.settings.max_upload_bytes
    data = image.file.read(limit + 1)
    too_large = (
        (
            "too_large",
            f"{image.size if image.size is not None else 'more than ' + str(limit)} bytes exceeds the limit of {limit}",
        )
        if len(data) > limit
        else None
    )
    item = Submission(
        b"" if too_large else data, content_id, post_text, context or None, callback_url or None, too_large
    )
    quotas.uploads(tenant, 1)
    [result] = services.producer.submit_many([item], tenant=tenant)
    quotas.spend(tenant, _created([result]))
    if isinstance(result, Rejection):
        return JSONResponse(_rejection_json(result), status_code=result.http_status)
    return JSONResponse(_ref_json(result), status_code=201 if result.created else 200)


@router.post(
    "/v1/jobs:batch",
    summary="Submit many memes (JSON, base64 images); per-item results",
    response_model=BatchOut,
    responses=errors(
        *AUTH_CODES, "too_large", "too_many_items", "quota_exceeded", "queue_full", "queue_unavailable", "bad_request"
    ),
)
def create_batch(tenant: Tenant, services: Svc, quotas: Qs, body: BatchIn) -> dict[str, Any]:
    limit = services.settings.max_batch_items
    if len(body.items) > limit:
        raise HTTPException(413, {"error": "too_many_items", "message": f"{len(body.items)} items; max {limit}"})
    quotas.uploads(tenant, len(body.items))
    results = services.producer.submit_many([_submission(i) for i in body.items], tenant=tenant)
    quotas.spend(tenant, _created(results))
    BATCH_SIZE.labels("api_batch").observe(len(results))
    accepted = sum(isinstance(r, JobRef) for r in results)
    return {"results": [_result_json(r) for r in results], "accepted": accepted, "rejected": len(results) - accepted}


@router.post(
    "/v1/jobs:stream",
    summary="NDJSON in; one result line per item out, as each completes",
    response_class=StreamingResponse,
    openapi_extra=STREAM_OPENAPI,
    responses={
        200: {
            "description": "one JSON line per item: its job (as GET answers it, plus `line` and "
            "`timeout`) or its error (`line`, `error`, `message`)",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        },
        **errors(*AUTH_CODES),
    },
)
async def create_stream(tenant: Tenant, services: Svc, quotas: Qs, request: Request) -> StreamingResponse:
    """Items are submitted as their lines arrive; results are written in completion order."""
    results: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []

    async def run(number: int, line: bytes) -> None:
        try:
            result = await _stream_line(services, quotas, tenant, number, line)
        except Exception as exc:  # every line gets its result line, or the response never ends
            result = {"line": number, **_stream_failure(exc)}
        await results.put(result)

    settings = services.settings
    # a line may hold one base64 image and its fields: its bytes are capped while reading, never buffered whole
    max_line = settings.max_upload_bytes * 4 // 3 + 4 * (settings.max_text_chars + settings.max_context_bytes) + 4096
    items = 0
    async for number, line in _ndjson_lines(request.stream(), max_line):
        if line is None:
            tasks.append(
                asyncio.create_task(
                    _answer(
                        results,
                        {"line": number, "error": "line_too_large", "message": f"the line exceeds {max_line} bytes"},
                    )
                )
            )
        elif items >= settings.max_stream_items:
            tasks.append(
                asyncio.create_task(
                    _answer(
                        results,
                        {
                            "line": number,
                            "error": "too_many_items",
                            "message": f"a stream carries at most {settings.max_stream_items} items; "
                            "send the rest in another",
                        },
                    )
                )
            )
        else:
            items += 1
            tasks.append(asyncio.create_task(run(number, line)))
    if not tasks:
        raise HTTPException(422, {"error": "invalid_request", "message": "the stream carried no items"})
    BATCH_SIZE.labels("api_stream").observe(len(tasks))

    async def body() -> AsyncIterator[str]:
        for _ in tasks:
            yield json.dumps(await results.get(), ensure_ascii=False) + "\n"

    return StreamingResponse(body(), media_type="application/x-ndjson")


def _stream_failure(exc: Exception) -> dict[str, str]:
    """A line the service could not take: the broker or the database is down (retry the line: uploads are
    idempotent by content id), or something unforeseen (logged with its traceback)."""
    if isinstance(exc, QueueUnavailable):
        return {
            "error": "queue_unavailable",
            "message": "the queue is unreachable; a stored job is re-published "
            "by the sweeper, and resubmitting the line is safe",
        }
    if isinstance(exc, sa_exc.DBAPIError):
        return {"error": "database_unavailable", "message": "the database is unreachable; resubmit the line"}
    log.exception("stream line failed")
    return {"error": "internal_error", "message": f"the line could not be processed ({type(exc).__name__})"}


async def _stream_line(services: ApiServices, quotas: Quotas, tenant: str, number: int, line: bytes) -> dict[str, Any]:
    try:
        item = BatchItem.model_validate_json(line)
    except ValueError as exc:
        return {"line": number, "error": "invalid_line", "message": f"not a valid item: {exc}"[:500]}
    try:
        await run_in_threadpool(quotas.uploads, tenant, 1)
    except Limited as exc:
        return {"line": number, "content_id": item.content_id, **exc.body, "retry_after_s": exc.retry_after_s}
    [result] = await run_in_threadpool(services.producer.submit_many, [_submission(item)], tenant=tenant)
    quotas.spend(tenant, _created([result]))
    if isinstance(result, Rejection):
        return {"line": number, **_rejection_json(result)}
    return {"line": number, **await _wait_final(services, result.job_id)}


async def _wait_final(services: ApiServices, job_id: uuid.UUID) -> dict[str, Any]:
    """Poll the job until it ends or ``stream_wait_s`` passes (then it is reported with ``timeout``)."""
    deadline = time.monotonic() + services.settings.stream_wait_s
    while True:
        view = await run_in_threadpool(services.view, job_id)
        if view is None:
            return {"job_id": str(job_id), "status": "missing"}
        if view.job.status.is_final or time.monotonic() > deadline:
            return {**job_json(view), "timeout": not view.job.status.is_final}
        await asyncio.sleep(POLL_S)


@router.get(
    "/v1/jobs/{job_id}",
    summary="Status, verdict and action of a job",
    response_model=JobOut,
    responses=errors(*AUTH_CODES, "not_found"),
)
def get_job(tenant: Tenant, services: Svc, job_id: str) -> dict[str, Any]:
    return job_json(_owned(services, tenant, job_id))


@router.get(
    "/v1/jobs",
    summary="Find a job by the platform's content id",
    response_model=JobOut,
    responses=errors(*AUTH_CODES, "not_found"),
)
def find_job(tenant: Tenant, services: Svc, content_id: Annotated[str, Query()]) -> dict[str, Any]:
    with services.sessions() as session:
        job = store.find_job(session, tenant, content_id)
    return job_json(_owned(services, tenant, str(job.id) if job else ""))


class AppealIn(BaseModel):
    reason: str = ""


@router.post(
    "/v1/jobs/{job_id}/appeal",
    status_code=201,
    summary="Appeal a job's action (review queue)",
    response_model=AppealOut,
    responses=errors(*AUTH_CODES, "not_found", "not_finished", "appeal_open", "too_large", "bad_request"),
)
def appeal(tenant: Tenant, services: Svc, job_id: str, body: AppealIn) -> dict[str, Any]:
    """The item enters the reviewers' appeals queue; the decision is called back to the job's callback URL.
    An id that is no job of this tenant — malformed ones included — is ``not_found``, as on GET."""
    with services.sessions() as session:
        appeal_id = reviews.file_appeal(session, tenant, _job_uuid(job_id), body.reason)
        session.commit()
    return {"appeal_id": appeal_id, "job_id": str(job_id), "status": "open"}


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
def readyz(services: Svc) -> JSONResponse:
    checks = services.readiness()
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


LOOPBACK = frozenset({"127.0.0.1", "::1"})


@router.get("/metrics", include_in_schema=False)
def metrics_endpoint(
    request: Request, services: Svc, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Prometheus metrics. They name tenants, so the public port serves them only with the bearer token
    ``MEMEGUARD_METRICS_TOKEN``, or without one only to a scraper on this host (loopback): to the world they
    do not exist (404)."""
    token = services.settings.metrics_token
    if token is not None:
        given = (authorization or "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, token.get_secret_value().encode()):
            raise HTTPException(
                401,
                {"error": "unauthorized", "message": "metrics need the metrics token"},
                headers={"WWW-Authenticate": "Bearer"},
            )
    elif (request.client.host if request.client else "") not in LOOPBACK:
        raise HTTPException(404, {"error": "not_found", "message": "no such route"})
    registry: CollectorRegistry = request.app.state.registry
    return Response(render(registry), media_type=CONTENT_TYPE_LATEST)


def _job_uuid(job_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(job_id)
    except ValueError:
        raise HTTPException(404, {"error": "not_found", "message": "no such job for this tenant"}) from None


def _owned(services: ApiServices, tenant: str, job_id: str) -> store.JobView:
    """The job if it exists and belongs to ``tenant``; otherwise 404 (never reveal foreign ids)."""
    try:
        view = services.view(uuid.UUID(job_id))
    except ValueError:
        view = None
    if view is None or view.job.tenant != tenant:
        raise HTTPException(404, {"error": "not_found", "message": "no such job for this tenant"})
    return view


async def _answer(results: asyncio.Queue[dict[str, Any]], result: dict[str, Any]) -> None:
    await results.put(result)


async def _ndjson_lines(chunks: AsyncIterator[bytes], max_line: int) -> AsyncIterator[tuple[int, bytes | None]]:
    """Split a byte stream into numbered non-empty lines; a line longer than ``max_line`` bytes is yielded as
    None once and its bytes are dropped as they arrive (memory stays bounded by ``max_line``)."""
    buffer, number, skipping = b"", 0, False
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            number += 1
            if skipping:
                skipping = False
            elif len(line) > max_line:
                yield number, None
            elif line.strip():
                yield number, line
        if len(buffer) > max_line:
            if not skipping:
                yield number + 1, None
            buffer, skipping = b"", True
    if buffer.strip() and not skipping:
        yield number + 1, buffer
