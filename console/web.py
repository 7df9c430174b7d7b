"""What every console page shares: the router, templates, the signed-in reviewer, CSRF checks, refusals.

Pages are server-rendered Jinja templates (autoescaped); the only script is a small static file for
keyboard shortcuts. Every response forbids caching and framing and allows scripts, styles and images from
the console's own origin only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Cookie, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.orm import Session, sessionmaker

from console import sessions
from console.signals import describe as describe_signal
from jobs.store import JobView
from lexicon.store import Check
from memeguard.blobs import BlobNotFound, BlobStore, BlobUnavailable
from memeguard.db import Role, User
from memeguard.schemas import label_zh
from memeguard.settings import Settings
from review import reviews, users
from review.users import UserRecord
from review.views import IDENTICAL_SHOWN


class ConsoleServices(Protocol):
    """What the console needs from the composition: settings, database sessions and the image store. The
    console names them here and never imports the composition (``Runtime`` satisfies this structurally)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def producer(self) -> Uploads: ...

    @property
    def kb_check(self) -> Check: ...

    def view(self, job_id: uuid.UUID) -> JobView | None: ...


class Submitted(Protocol):
    @property
    def job_id(self) -> uuid.UUID: ...


class Uploads(Protocol):
    """The upload path, as the try-it page uses it (``producer.service.Producer`` satisfies it): the same
    validation, storage, queue and pipeline as the API. Refusals raise ``memeguard.schemas.Rejected``."""

    def submit(
        self, image: bytes, content_id: str, *, tenant: str, post_text: str = "", context: dict[str, Any] | None = None
    ) -> Submitted: ...


class ConsoleRoute(APIRoute):
    """A console route: a review step refused (``ReviewError``) becomes the console's refusal page with the
    error's status and Chinese message, and so does a request the route cannot read (a malformed item id
    is no such item: 404) — the one place the console translates them, so no route repeats it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def translated(request: Request) -> Response:
            try:
                return await handler(request)
            except reviews.ReviewError as exc:
                raise Refused(exc.status, exc.zh) from exc
            except RequestValidationError as exc:  # a page's own refusal, not the API's JSON
                raise _invalid(exc) from exc

        return translated


QUEUE_NAMES = {
    "tagged": "打标",
    "throttled": "限流",
    "low_confidence": "低置信度",
    "qa_sample": "质检抽样",
    "appeals": "申诉",
    "escalated": "升级",
}


def create_router() -> APIRouter:
    """The console's router (every page under /review, none in the OpenAPI schema, ``ReviewError``
    translated by ``ConsoleRoute``); each module adds its pages with its ``add_routes``."""
    return APIRouter(prefix="/review", include_in_schema=False, route_class=ConsoleRoute)


@lru_cache(maxsize=1)
def templates() -> Environment:
    """The page templates (autoescaped), loaded on the first page rendered, not at import."""
    environment = Environment(loader=PackageLoader("console", "templates"), autoescape=select_autoescape(["html"]))
    environment.filters["zh"] = label_zh
    environment.globals["claim_minutes"] = int(reviews.CLAIM_TTL.total_seconds() // 60)
    environment.globals["queue_names"] = QUEUE_NAMES
    environment.globals["identical_shown"] = IDENTICAL_SHOWN
    environment.filters["signal_view"] = describe_signal
    environment.filters["queue_size"] = lambda n: f"{reviews.SIZE_CAP:,}+" if n > reviews.SIZE_CAP else str(n)
    return environment


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _invalid(exc: RequestValidationError) -> Refused:
    if any(error.get("loc", ("",))[0] == "path" for error in exc.errors()):
        return Refused(404, "没有这个条目或页面。")
    return Refused(400, "请求无效：表单或参数不完整，请返回重试。")


def not_found() -> Response:
    """Every other path under /review: the console's own 404 page (registered last)."""
    raise Refused(404, "没有这个页面。")


IMAGE_HEADERS = {
    "Cache-Control": "private, no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Disposition": "inline",
}


def image_of(services: ConsoleServices, sha256: str | None) -> bytes:
    """An item's image bytes, or the console's refusal: no image, gone from the store (retention), or the
    store not answering (503: transient, try again). Every page that serves an image comes through here."""
    if not sha256:
        raise Refused(404, "这条内容没有图片。")
    try:
        return services.blobs.get(sha256)
    except BlobNotFound as exc:
        raise Refused(404, "图片已不在存储中。") from exc
    except BlobUnavailable as exc:
        raise Refused(503, "图片存储暂时不可用，请稍后重试。") from exc


class Refused(Exception):
    """A console request refused: rendered as a Chinese error page, or a redirect to the login form."""

    def __init__(self, status: int, message: str = "", location: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.location = status, message, location


@dataclass(frozen=True)
class Reviewer:
    """The signed-in reviewer of this request, with the session's CSRF token."""

    services: ConsoleServices
    user: UserRecord
    csrf: str

    def check_csrf(self, token: str | None) -> None:
        if not sessions.csrf_matches(self.csrf, token):
            raise Refused(403, "表单已过期或来源不明（CSRF 校验失败），请刷新页面后重试。")

    @property
    def qa_share(self) -> float:
        return self.services.settings.review_qa_share


def console_services(request: Request) -> tuple[ConsoleServices, bytes]:
    """The services and the session-signing secret; 404 when the console is not enabled."""
    services: ConsoleServices = request.app.state.services
    secret = services.settings.console_secret
    if secret is None:
        raise Refused(404, "审核台未启用（MEMEGUARD_CONSOLE_SECRET 未设置）。")
    return services, secret.get_secret_value().encode()


def signed_in(request: Request, mg_session: Annotated[str | None, Cookie()] = None) -> Reviewer:
    """The reviewer behind a valid session cookie whose account is enabled; otherwise off to the login form."""
    services, secret = console_services(request)
    current = sessions.read_session(secret, mg_session)
    with services.sessions() as session:
        row = session.get(User, current.user_id) if current else None
        live = row is not None and current is not None and not row.disabled and not _revoked(row, current)
        user = users.record(row) if live and row is not None else None
    if current is None or user is None:
        raise Refused(303, location="/review/login")
    return Reviewer(services, user, current.csrf)


def _revoked(row: User, current: sessions.SessionData) -> bool:
    cutoff = row.sessions_valid_after
    return cutoff is not None and current.issued_ms < int(cutoff.timestamp() * 1000)


SignedIn = Annotated[Reviewer, Depends(signed_in)]


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(
        templates().get_template(template).render(**context), status_code=status, headers=SECURITY_HEADERS
    )


def refused_page(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    if exc.location:
        return RedirectResponse(exc.location, status_code=exc.status)
    return page("error.html", exc.status, code=exc.status, message=exc.message)


def require_reason(reason: str, confirm: str = "yes") -> None:
    """A change a lead makes to banks or the radar carries a reason (kept in the audit log); one that changes
    how every later copy of an image is handled also an explicit confirmation, not one click."""
    if not reason.strip():
        raise Refused(400, "这项改动需要填写理由（记入审计日志）。")
    if confirm != "yes":
        raise Refused(400, "请勾选确认：这会改变之后所有相同图片的处理。")


def require_lead(me: Reviewer, zh: str) -> None:
    """The leads' pages (radar, knowledge-base overlay, releases): seniors and admins only; ``zh`` says so."""
    if me.user.role is Role.REVIEWER:
        raise Refused(403, zh)


def reviewer_actor(me: Reviewer) -> str:
    """Who a console change is by, as the audit log names them."""
    return f"reviewer:{me.user.username}"


def commit_change(
    me: Reviewer,
    csrf: str,
    change: Callable[[Session], object],
    then: str,
    refusals: tuple[type[Exception], ...],
) -> Response:
    """A console form's change: the CSRF token checked, the change in one transaction with its audit entry,
    a refusal of the domain (one of ``refusals``) shown as a Chinese page, then a redirect to ``then``."""
    me.check_csrf(csrf)
    with me.services.sessions() as session:
        try:
            change(session)
        except refusals as exc:  # a domain error may say itself in Chinese (``zh``)
            raise Refused(400, f"未能完成：{getattr(exc, 'zh', exc)}") from exc
        session.commit()
    return RedirectResponse(then, status_code=303)


def set_cookie(response: Response, services: ConsoleServices, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        path="/review",
        secure=services.settings.console_secure_cookies,
    )
