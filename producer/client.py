"""Python client for the ingestion API, for a platform's upload pipeline. Needs only ``httpx``.

Uploads are idempotent by (tenant, content id): sending the same content id again returns the same job, so
the client retries freely — on 429 and 503 (honouring ``Retry-After``) and on connection errors, with
exponential backoff and full jitter. Every refusal raises ``MemeguardError`` carrying the API's stable
code (a body that is not the API's JSON, e.g. from a proxy, still gets one: ``http_<status>``).
``Client`` is synchronous, ``AsyncClient`` the same for asyncio; ``verify`` checks a callback's Standard
Webhooks signature on the receiving side.

This module imports nothing of memeguard's server side: a platform installs ``httpx`` and copies or
installs this one file.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict

import httpx

RETRY_STATUSES = frozenset({429, 503})


class Item(Protocol):
    """What ``submit_many`` and ``stream`` take: ``Upload``, or any object with these attributes."""

    @property
    def image(self) -> bytes: ...
    @property
    def content_id(self) -> str: ...
    @property
    def post_text(self) -> str: ...
    @property
    def context(self) -> dict[str, Any] | str | None: ...
    @property
    def callback_url(self) -> str | None: ...


@dataclass(frozen=True)
class Upload:
    image: bytes
    content_id: str
    post_text: str = ""
    context: dict[str, Any] | str | None = None
    callback_url: str | None = None


@dataclass(frozen=True)
class JobRef:
    """An accepted upload: ``created`` is False when the content id was already known (the same job)."""

    job_id: str
    content_id: str
    status: str
    created: bool


class Signal(TypedDict):
    source: str
    decided: list[str]
    backs: list[str]
    evidence: list[str]


class Verdict(TypedDict, total=False):
    """The structured reading of a meme; ``*_zh`` are the Chinese labels."""

    emotion: str
    intent: str
    harm_type: str
    confidence: float
    emotion_confidence: float | None
    intent_confidence: float | None
    explanation: str
    ocr_text: str
    signals: list[Signal]
    analyzer: str
    analyzer_version: str
    latency_ms: float
    emotion_zh: str
    intent_zh: str
    harm_type_zh: str


@dataclass(frozen=True)
class Action:
    action: str  # allow / throttle / tag / block
    policy: str  # name@version
    rule_id: str
    reason: str
    source: str


@dataclass(frozen=True)
class Job:
    job_id: str
    content_id: str
    status: str  # queued / running / done / failed / rejected
    verdict: Verdict | None
    action: Action | None
    error: dict[str, str] | None
    timings: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Job:
        action = body.get("action")
        return cls(
            body["job_id"],
            body["content_id"],
            body["status"],
            body.get("verdict"),
            Action(**action) if action else None,
            body.get("error"),
            body.get("timings") or {},
            dict(body),
        )


class MemeguardError(Exception):
    """A refused request: ``code`` is the API's stable error code (``too_large``, ``rate_limited`` …),
    ``status`` the HTTP status (for one item of a batch: the status it would have had on its own)."""

    def __init__(
        self, status: int | None, code: str, message: str, job_id: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.job_id = status, code, message, job_id
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Retry:
    """How a refused or failed request is tried again: up to ``attempts`` tries in all, waiting
    ``Retry-After`` when the server says, else ``base_s * 2**n`` with full jitter, never over ``max_s``."""

    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 30.0

    def wait(self, attempt: int, outcome: httpx.Response | httpx.TransportError) -> float | None:
        """Seconds to wait before trying again after ``outcome`` of try number ``attempt`` (from 0), or None
        when it stands: an answer that is not 429/503, or the last try. The one rule both clients follow."""
        if attempt >= self.attempts - 1:
            return None
        if isinstance(outcome, httpx.TransportError):
            return self.delay(attempt, None)
        if outcome.status_code in RETRY_STATUSES:
            return self.delay(attempt, _retry_after(outcome))
        return None

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_s)
        return random.uniform(0, min(self.max_s, self.base_s * 2**attempt))


NO_RETRY = Retry(attempts=1)


class _Base:
    def __init__(self, api_key: str, tenant: str | None, retry: Retry) -> None:
        self._headers = {"Authorization": f"Bearer {api_key}"}
        if tenant is not None:
            self._headers["X-Memeguard-Tenant"] = tenant
        self.retry = retry


class Client(_Base):
    """``Client(url, key)``; pass ``tenant=`` (here or per call) to have the server check the key's tenant."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        tenant: str | None = None,
        timeout: float = 30.0,
        retry: Retry = Retry(),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(api_key, tenant, retry)
        self._http = httpx.Client(base_url=base_url, headers=self._headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def submit(
        self,
        image: bytes | Path,
        content_id: str,
        *,
        tenant: str | None = None,
        post_text: str = "",
        context: dict[str, Any] | None = None,
        callback_url: str | None = None,
    ) -> JobRef:
        """Submit one upload; re-submitting the same content id returns the same job (``created=False``)."""
        form, files = _form(image, content_id, post_text, context, callback_url)
        body = self._request("POST", "/v1/jobs", data=form, files=files, headers=_tenant_header(tenant))
        return _ref(body)

    def submit_many(self, items: Iterable[Item], *, tenant: str | None = None) -> list[JobRef | MemeguardError]:
        """One request for many items; each result is a ``JobRef`` or the item's own error."""
        payload = {"items": [_item_json(item) for item in items]}
        body = self._request("POST", "/v1/jobs:batch", json=payload, headers=_tenant_header(tenant))
        return [_result(r) for r in body["results"]]

    def stream(self, items: Iterable[Item]) -> Iterator[dict[str, Any]]:
        """NDJSON streaming: yields one finished result per item, in completion order. Not retried as a
        whole (lines already answered would be sent again); a line's own ``error`` says what to resend."""
        lines = (json.dumps(_item_json(item), ensure_ascii=False).encode() + b"\n" for item in items)
        with self._http.stream(
            "POST", "/v1/jobs:stream", content=lines, headers={"Content-Type": "application/x-ndjson"}
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def get(self, job_id: str) -> Job:
        return Job.from_json(self._request("GET", f"/v1/jobs/{job_id}"))

    def find(self, content_id: str) -> Job:
        return Job.from_json(self._request("GET", "/v1/jobs", params={"content_id": content_id}))

    def appeal(self, job_id: str, reason: str = "") -> dict[str, Any]:
        """Open an appeal; a retry after a lost answer gets ``appeal_open`` (one open appeal per job)."""
        return self._request("POST", f"/v1/jobs/{job_id}/appeal", json={"reason": reason})

    def _request(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                outcome: httpx.Response | httpx.TransportError = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                outcome = exc
            wait = self.retry.wait(attempt, outcome)
            if wait is None:
                return _settled(outcome)
            time.sleep(wait)
            attempt += 1


class AsyncClient(_Base):
    """``Client`` for asyncio: the same methods, awaited (``stream`` is an async iterator)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        tenant: str | None = None,
        timeout: float = 30.0,
        retry: Retry = Retry(),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(api_key, tenant, retry)
        self._http = httpx.AsyncClient(base_url=base_url, headers=self._headers, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def submit(
        self,
        image: bytes | Path,
        content_id: str,
        *,
        tenant: str | None = None,
        post_text: str = "",
        context: dict[str, Any] | None = None,
        callback_url: str | None = None,
    ) -> JobRef:
        form, files = _form(image, content_id, post_text, context, callback_url)
        return _ref(await self._request("POST", "/v1/jobs", data=form, files=files, headers=_tenant_header(tenant)))

    async def submit_many(self, items: Iterable[Item], *, tenant: str | None = None) -> list[JobRef | MemeguardError]:
        payload = {"items": [_item_json(item) for item in items]}
        body = await self._request("POST", "/v1/jobs:batch", json=payload, headers=_tenant_header(tenant))
        return [_result(r) for r in body["results"]]

    async def stream(self, items: Iterable[Item]) -> AsyncIterator[dict[str, Any]]:
        content = b"".join(json.dumps(_item_json(i), ensure_ascii=False).encode() + b"\n" for i in items)
        async with self._http.stream(
            "POST", "/v1/jobs:stream", content=content, headers={"Content-Type": "application/x-ndjson"}
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                raise _error(response)
            async for line in response.aiter_lines():
                if line.strip():
                    yield json.loads(line)

    async def get(self, job_id: str) -> Job:
        return Job.from_json(await self._request("GET", f"/v1/jobs/{job_id}"))

    async def find(self, content_id: str) -> Job:
        return Job.from_json(await self._request("GET", "/v1/jobs", params={"content_id": content_id}))

    async def appeal(self, job_id: str, reason: str = "") -> dict[str, Any]:
        return await self._request("POST", f"/v1/jobs/{job_id}/appeal", json={"reason": reason})

    async def _request(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                outcome: httpx.Response | httpx.TransportError = await self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                outcome = exc
            wait = self.retry.wait(attempt, outcome)
            if wait is None:
                return _settled(outcome)
            await asyncio.sleep(wait)
            attempt += 1


def verify(
    secret: bytes, body: bytes, headers: Mapping[str, str], *, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """Check a callback's Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``) with the tenant's secret; a timestamp further than ``tolerance_s`` from now is
    refused (replays). Any ``v1,`` signature of the header's list may match (secret rotation)."""
    lower = {k.lower(): v for k, v in headers.items()}
    message_id, stamp = lower.get("webhook-id", ""), lower.get("webhook-timestamp", "")
    if not message_id or not stamp.isdigit() or abs((now or time.time()) - int(stamp)) > tolerance_s:
        return False
    mac = hmac.new(secret, f"{message_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    given = [s.split(",", 1)[1] for s in lower.get("webhook-signature", "").split() if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, g) for g in given)


def _form(
    image: bytes | Path, content_id: str, post_text: str, context: dict[str, Any] | None, callback_url: str | None
) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    data = image.read_bytes() if isinstance(image, Path) else image
    form: dict[str, str] = {"content_id": content_id, "post_text": post_text}
    if context is not None:
        form["context"] = json.dumps(context, ensure_ascii=False)
    if callback_url is not None:
        form["callback_url"] = callback_url
    return form, {"image": ("upload", data)}


def _tenant_header(tenant: str | None) -> dict[str, str]:
    return {"X-Memeguard-Tenant": tenant} if tenant is not None else {}


def _item_json(item: Item) -> dict[str, Any]:
    context = json.loads(item.context) if isinstance(item.context, str) else item.context
    return {
        "content_id": item.content_id,
        "image_base64": base64.b64encode(item.image).decode(),
        "post_text": item.post_text,
        "context": context,
        "callback_url": item.callback_url,
    }


def _ref(body: Mapping[str, Any]) -> JobRef:
    return JobRef(body["job_id"], body["content_id"], body["status"], body["created"])


def _result(row: dict[str, Any]) -> JobRef | MemeguardError:
    if "error" in row:
        return MemeguardError(row.get("http_status"), row["error"], row["message"], row.get("job_id"))
    return _ref(row)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _error(response: httpx.Response) -> MemeguardError:
    """The API's error body as an exception; a body that is not the API's JSON still gets a code."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "error" not in body:
        return MemeguardError(
            response.status_code,
            f"http_{response.status_code}",
            response.text[:200],
            retry_after_s=_retry_after(response),
        )
    return MemeguardError(
        response.status_code,
        str(body["error"]),
        str(body.get("message", "")),
        body.get("job_id"),
        _retry_after(response),
    )


def _settled(outcome: httpx.Response | httpx.TransportError) -> dict[str, Any]:
    """The final outcome of a request: the connection error raised, or the answer checked."""
    if isinstance(outcome, httpx.TransportError):
        raise outcome
    return _checked(outcome)


def _checked(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise _error(response)
    try:
        body: dict[str, Any] = response.json()
    except ValueError as exc:
        raise MemeguardError(response.status_code, "bad_response", "the answer is not JSON") from exc
    return body
