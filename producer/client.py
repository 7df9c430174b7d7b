"""Python client for the ingestion API, for a platform's upload pipeline.

``submit`` and ``submit_many`` are idempotent by (tenant, content_id): calling again with the same content id
returns the same job, so a pipeline can retry freely after a timeout.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from producer.service import Submission
from producer.validation import HTTP_STATUS


@dataclass(frozen=True)
class JobRef:
    job_id: str
    content_id: str
    status: str
    created: bool


class MemeguardError(Exception):
    """A refused request: ``code`` is the API's stable error code (``too_large``, ``unsupported_type`` …)."""

    def __init__(self, status: int, code: str, message: str, job_id: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.job_id = status, code, message, job_id


class Client:
    """``Client(url, key)``; pass ``tenant=`` (here or per call) to have the server check the key's tenant."""

    def __init__(self, base_url: str, api_key: str, *, tenant: str | None = None, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"}
        if tenant is not None:
            headers["X-Memeguard-Tenant"] = tenant
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def submit(self, image: bytes | Path, content_id: str, *, tenant: str | None = None, post_text: str = "",
               context: dict[str, Any] | None = None, callback_url: str | None = None) -> JobRef:
        """Submit one upload; re-submitting the same content id returns the same job (``created=False``)."""
        data = image.read_bytes() if isinstance(image, Path) else image
        form: dict[str, str] = {"content_id": content_id, "post_text": post_text}
        if context is not None:
            form["context"] = json.dumps(context, ensure_ascii=False)
        if callback_url is not None:
            form["callback_url"] = callback_url
        response = self._http.post("/v1/jobs", data=form, files={"image": ("upload", data)},
                                   headers=_tenant_header(tenant))
        body = _checked(response)
        return JobRef(body["job_id"], body["content_id"], body["status"], body["created"])

    def submit_many(self, items: Iterable[Submission], *, tenant: str | None = None) -> list[JobRef | MemeguardError]:
        """One request for many items; each result is a ``JobRef`` or the item's own error."""
        payload = {"items": [_item_json(item) for item in items]}
        body = _checked(self._http.post("/v1/jobs:batch", json=payload, headers=_tenant_header(tenant)))
        return [_result(r) for r in body["results"]]

    def stream(self, items: Iterable[Submission]) -> Iterator[dict[str, Any]]:
        """NDJSON streaming: yields one finished result per item, in completion order."""
        lines = (json.dumps(_item_json(item), ensure_ascii=False).encode() + b"\n" for item in items)
        with self._http.stream("POST", "/v1/jobs:stream", content=lines,
                               headers={"Content-Type": "application/x-ndjson"}) as response:
            if response.status_code >= 400:
                response.read()
                _checked(response)
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def get(self, job_id: str) -> dict[str, Any]:
        return _checked(self._http.get(f"/v1/jobs/{job_id}"))


def _tenant_header(tenant: str | None) -> dict[str, str]:
    return {"X-Memeguard-Tenant": tenant} if tenant is not None else {}


def _item_json(item: Submission) -> dict[str, Any]:
    context = json.loads(item.context) if isinstance(item.context, str) else item.context
    return {"content_id": item.content_id, "image_base64": base64.b64encode(item.image).decode(),
            "post_text": item.post_text, "context": context, "callback_url": item.callback_url}


def _result(row: dict[str, Any]) -> JobRef | MemeguardError:
    if "error" in row:
        return MemeguardError(HTTP_STATUS.get(row["error"], 422), row["error"], row["message"], row.get("job_id"))
    return JobRef(row["job_id"], row["content_id"], row["status"], row["created"])


def _checked(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    if response.status_code >= 400:
        raise MemeguardError(response.status_code, body.get("error", "error"), body.get("message", ""),
                             body.get("job_id"))
    return body
