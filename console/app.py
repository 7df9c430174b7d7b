"""Console pages: login, logout, queues. Mounted on the API app under ``/review`` when
MEMEGUARD_CONSOLE_SECRET is set (404 otherwise: no console, no attack surface).

Every page checks the session; every state change (login, logout) checks the CSRF token; a reviewer sees
only the tenants assigned to them, and the escalation queue only with a senior or admin role.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from console import sessions
from memeguard import reviews, users
from memeguard.db import User
from memeguard.runtime import Runtime
from memeguard.schemas import label_zh

router = APIRouter(prefix="/review", include_in_schema=False)
TEMPLATES = Environment(loader=PackageLoader("console", "templates"), autoescape=select_autoescape(["html"]))


def _runtime(request: Request) -> tuple[Runtime, bytes]:
    runtime: Runtime = request.app.state.runtime
    secret = runtime.settings.console_secret
    if secret is None:
        raise HTTPException(404, {"error": "not_found", "message": "the review console is not enabled"})
    return runtime, secret.get_secret_value().encode()


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(template).render(**context), status_code=status)


def _set_cookie(response: Response, runtime: Runtime, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", path="/review",
                        secure=runtime.settings.console_secure_cookies)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    runtime, secret = _runtime(request)
    cookie, csrf = sessions.new_login_token(secret)
    response = _page("login.html", csrf=csrf)
    _set_cookie(response, runtime, sessions.LOGIN_COOKIE, cookie, sessions.LOGIN_TTL_S)
    return response


@router.post("/login")
def login(request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()],
          csrf: Annotated[str, Form()], mg_login: Annotated[str | None, Cookie()] = None) -> Response:
    runtime, secret = _runtime(request)
    expected = (sessions.unsign(secret, mg_login) or {}).get("csrf")
    if not sessions.csrf_matches(str(expected) if expected else None, csrf):
        return _page("login.html", 403, csrf="", error="表单已过期或来源不明（CSRF），请刷新后重试。")
    with runtime.sessions() as session:
        user = users.authenticate(session, username, password)
        session.commit()
    if user is None:
        return _page("login.html", 401, csrf=csrf, error="用户名或密码错误。")
    token, _ = sessions.new_session(secret, user.id)
    response = RedirectResponse("/review/queue/tagged", status_code=303)
    _set_cookie(response, runtime, sessions.SESSION_COOKIE, token, sessions.SESSION_TTL_S)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()],
           mg_session: Annotated[str | None, Cookie()] = None) -> Response:
    _, secret = _runtime(request)
    current = sessions.read_session(secret, mg_session)
    if current is None or not sessions.csrf_matches(current.csrf, csrf):
        raise HTTPException(403, {"error": "csrf", "message": "missing or wrong CSRF token"})
    response = RedirectResponse("/review/login", status_code=303)
    response.delete_cookie(sessions.SESSION_COOKIE, path="/review")
    return response


@router.get("/queue/{name}")
def queue_page(request: Request, name: str, mg_session: Annotated[str | None, Cookie()] = None) -> Response:
    runtime, secret = _runtime(request)
    current = sessions.read_session(secret, mg_session)
    with runtime.sessions() as session:
        row = session.get(User, current.user_id) if current else None
        user = users.record(row) if row is not None and not row.disabled else None
        if current is None or user is None:
            return RedirectResponse("/review/login", status_code=303)
        try:
            items, error, status = reviews.queue(session, user, name), None, 200
        except reviews.ReviewError as exc:
            items, error, status = [], str(exc), 403 if "senior" in str(exc) else 404
    labels = {item.harm_type: label_zh(item.harm_type) for item in items}
    return _page("queue.html", status, user=user, csrf=current.csrf, queues=reviews.QUEUES, name=name,
                 items=items, labels=labels, error=error)
