"""What every console page shares: the router, templates, the signed-in reviewer, CSRF checks, refusals.

Pages are server-rendered Jinja templates (autoescaped); the only script is a small static file for
keyboard shortcuts. Every response forbids caching and framing and allows scripts, styles and images from
the console's own origin only.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape

from console import sessions
from memeguard import reviews, users
from memeguard.db import User
from memeguard.runtime import Runtime
from memeguard.schemas import label_zh
from memeguard.users import UserRecord


class ConsoleRoute(APIRoute):
    """A console route: a review step refused (``ReviewError``) becomes the console's refusal page with the
    error's status — the one place the console translates them, so no route repeats it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def translated(request: Request) -> Response:
            try:
                return await handler(request)
            except reviews.ReviewError as exc:
                raise Refused(exc.status, str(exc)) from exc

        return translated


router = APIRouter(prefix="/review", include_in_schema=False, route_class=ConsoleRoute)
TEMPLATES = Environment(loader=PackageLoader("console", "templates"), autoescape=select_autoescape(["html"]))
TEMPLATES.filters["zh"] = label_zh
TEMPLATES.globals["claim_minutes"] = int(reviews.CLAIM_TTL.total_seconds() // 60)
TEMPLATES.globals["queue_names"] = {
    "tagged": "打标",
    "throttled": "限流",
    "low_confidence": "低置信度",
    "qa_sample": "质检抽样",
    "appeals": "申诉",
    "escalated": "升级",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A console request refused: rendered as a Chinese error page, or a redirect to the login form."""

    def __init__(self, status: int, message: str = "", location: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.location = status, message, location


@dataclass(frozen=True)
class Reviewer:
    """The signed-in reviewer of this request, with the session's CSRF token."""

    runtime: Runtime
    user: UserRecord
    csrf: str

    def check_csrf(self, token: str | None) -> None:
        if not sessions.csrf_matches(self.csrf, token):
            raise Refused(403, "表单已过期或来源不明（CSRF 校验失败），请刷新页面后重试。")

    @property
    def qa_share(self) -> float:
        return self.runtime.settings.review_qa_share


def console_runtime(request: Request) -> tuple[Runtime, bytes]:
    """The runtime and the session-signing secret; 404 when the console is not enabled."""
    runtime: Runtime = request.app.state.runtime
    secret = runtime.settings.console_secret
    if secret is None:
        raise Refused(404, "审核台未启用（MEMEGUARD_CONSOLE_SECRET 未设置）。")
    return runtime, secret.get_secret_value().encode()


def signed_in(request: Request, mg_session: Annotated[str | None, Cookie()] = None) -> Reviewer:
    """The reviewer behind a valid session cookie whose account is enabled; otherwise off to the login form."""
    runtime, secret = console_runtime(request)
    current = sessions.read_session(secret, mg_session)
    with runtime.sessions() as session:
        row = session.get(User, current.user_id) if current else None
        live = row is not None and current is not None and not row.disabled and not _revoked(row, current)
        user = users.record(row) if live and row is not None else None
    if current is None or user is None:
        raise Refused(303, location="/review/login")
    return Reviewer(runtime, user, current.csrf)


def _revoked(row: User, current: sessions.SessionData) -> bool:
    cutoff = row.sessions_valid_after
    return cutoff is not None and current.issued_ms < int(cutoff.timestamp() * 1000)


SignedIn = Annotated[Reviewer, Depends(signed_in)]


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(
        TEMPLATES.get_template(template).render(**context), status_code=status, headers=SECURITY_HEADERS
    )


def refused_page(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    if exc.location:
        return RedirectResponse(exc.location, status_code=exc.status)
    return page("error.html", exc.status, code=exc.status, message=exc.message)


def set_cookie(response: Response, runtime: Runtime, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        path="/review",
        secure=runtime.settings.console_secure_cookies,
    )
