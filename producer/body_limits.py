"""Byte caps on request bodies, enforced while the body is read, before anything parses it.

The rule: a request may not make the API hold more than its endpoint's cap in memory. A declared
``Content-Length`` over the cap is refused before one byte is read; a chunked body is counted as it arrives
and refused the moment it passes the cap, so a 40 MB JSON field costs the API at most the cap, not 40 MB plus
its parsed copy. ``:stream`` is exempt here: it is read line by line, each line capped on its own
(``producer.api``), and its items are counted.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers and the small form fields


@dataclass(frozen=True)
class BodyCaps:
    """Per-endpoint caps in bytes: ``upload`` for ``POST /v1/jobs`` (one image and its fields), ``batch`` for
    ``POST /v1/jobs:batch``, ``default`` for every other request with a body."""

    upload: int
    batch: int
    default: int

    def for_path(self, path: str) -> int | None:
        if path.endswith(":stream"):
            return None
        if path == "/v1/jobs":
            return self.upload
        if path.endswith(":batch"):
            return self.batch
        return self.default


def too_large(cap: int, size: int | None) -> HTTPException:
    stated = f"{size} bytes" if size is not None else "more bytes than that"
    return HTTPException(
        413,
        {"error": "too_large", "message": f"the request body exceeds this endpoint's limit of {cap} bytes ({stated})"},
    )


class BodyLimit:
    """ASGI middleware applying ``BodyCaps``. The refusal is raised from ``receive``, i.e. inside the
    endpoint that is reading, so the app's own handler answers it in the one error shape."""

    def __init__(self, app: ASGIApp, caps: BodyCaps) -> None:
        self.app, self.caps = app, caps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cap = self.caps.for_path(scope["path"]) if scope["type"] == "http" else None
        if cap is None:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _refuse(send, too_large(cap, declared))
            return
        await self.app(scope, _counting(receive, cap), send)


def _counting(receive: Receive, cap: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                raise too_large(cap, None)
        return message

    return counted


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, exc: HTTPException) -> None:
    body = json.dumps(exc.detail).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
