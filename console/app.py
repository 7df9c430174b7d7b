"""Console entry: login, logout, queues and "claim the next item". Mounted on the API app under ``/review``
when MEMEGUARD_CONSOLE_SECRET is set (404 otherwise: no console, no attack surface).

Every page checks the session; every state change checks the CSRF token; a reviewer sees only the tenants
assigned to them, and the escalation queue only with a senior or admin role.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Cookie, FastAPI, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from console import admin, dashboard, items, kb, radar, releases, sessions, trial, wellness
from console.web import (
    Refused,
    SignedIn,
    console_services,
    create_router,
    not_found,
    page,
    refused_page,
    set_cookie,
)
from memeguard.db import utcnow
from memeguard.schemas import HarmType, ModerationAction
from review import reviews, users

STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}


def install(app: FastAPI) -> None:
    """Mount the console on the API app, with its own (HTML) refusal pages. The router and its routes are
    built here, per app, not when the modules are imported."""
    router = create_router()
    pages = (dashboard, items, trial, wellness, admin, radar, kb, releases)
    for module_routes in (*(module.add_routes for module in pages), add_routes):
        module_routes(router)
    router.api_route("/{path:path}", methods=["GET", "POST"])(not_found)  # last: what no page matched
    app.add_exception_handler(Refused, refused_page)
    app.include_router(router)


def static(name: str) -> Response:
    if name not in STATIC:
        raise Refused(404, "没有这个文件。")
    body = files("console").joinpath("static", name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "private, max-age=300"})


def home() -> Response:
    return RedirectResponse("/review/queue/tagged", status_code=303)


def login_form(request: Request) -> Response:
    services, secret = console_services(request)
    cookie, csrf = sessions.new_login_token(secret)
    response = page("login.html", csrf=csrf)
    set_cookie(response, services, sessions.LOGIN_COOKIE, cookie, sessions.LOGIN_TTL_S)
    return response


def login(
    request: Request,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    mg_login: Annotated[str | None, Cookie()] = None,
) -> Response:
    services, secret = console_services(request)
    expected = (sessions.unsign(secret, mg_login) or {}).get("csrf")
    if not sessions.csrf_matches(str(expected) if expected else None, csrf):
        return page("login.html", 403, csrf="", error="表单已过期或来源不明（CSRF），请刷新后重试。")
    with services.sessions() as session:
        user = users.authenticate(session, username, password)
        session.commit()
    if user is None:
        return page("login.html", 401, csrf=csrf, error="用户名或密码错误。")
    token, _ = sessions.new_session(secret, user.id)
    response = RedirectResponse("/review/queue/tagged", status_code=303)
    set_cookie(response, services, sessions.SESSION_COOKIE, token, sessions.SESSION_TTL_S)
    return response


def logout(me: SignedIn, csrf: Annotated[str, Form()] = "") -> Response:
    """Ends the session for good: every session of this account issued before now is refused from now on
    (a copied cookie is worthless after logout), and the cookie is deleted."""
    me.check_csrf(csrf)
    with me.services.sessions() as session:
        users.end_sessions(session, me.user.username, actor=f"reviewer:{me.user.username}")
        session.commit()
    response = RedirectResponse("/review/login", status_code=303)
    response.delete_cookie(sessions.SESSION_COOKIE, path="/review")
    return response


PAGE_SIZE = 50


def queue_page(
    me: SignedIn,
    name: str,
    rule: str | None = None,
    harm: str = "",
    analyzer: str = "",
    since: str = "",
    until: str = "",
    q: str = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1,
    empty: int = 0,
    done: int = 0,
) -> Response:
    """A queue as a list with thumbnails, filters (rule, harm type, analyzer, dates), search (job id, image
    hash, content id) and pages of ``PAGE_SIZE``."""
    filters = _filters(rule, harm, analyzer, since, until, q)
    with me.services.sessions() as session:
        found = reviews.queue(
            session,
            me.user,
            name,
            filters=filters,
            limit=PAGE_SIZE + 1,
            offset=(page_no - 1) * PAGE_SIZE,
            qa_share=me.qa_share,
        )
        sizes = reviews.queue_sizes(session, me.user, me.qa_share)
    query = {
        k: v
        for k, v in {"rule": rule, "harm": harm, "analyzer": analyzer, "since": since, "until": until, "q": q}.items()
        if v
    }
    return page(
        "queue.html",
        me=me,
        name=name,
        rule=rule,
        filters=query,
        items=found[:PAGE_SIZE],
        more=len(found) > PAGE_SIZE,
        page_no=page_no,
        sizes=sizes,
        empty=empty,
        done=done,
        harm_types=list(HarmType),
        sla_h=me.services.settings.review_sla_h,
        now=utcnow(),
    )


def _filters(rule: str | None, harm: str, analyzer: str, since: str, until: str, q: str) -> reviews.QueueFilter:
    """The queue page's query parameters as a filter; a malformed one is refused by name."""
    try:
        return reviews.QueueFilter(
            rule=rule or None,
            harm_type=HarmType(harm) if harm else None,
            analyzer=analyzer or None,
            since=datetime.fromisoformat(since).replace(tzinfo=UTC) if since else None,
            until=datetime.fromisoformat(until).replace(tzinfo=UTC) + timedelta(days=1) if until else None,
            search=q[:200],
        )
    except ValueError as exc:
        raise Refused(400, "筛选条件无效：日期写作 2026-12-01，危害类型从列表中选。") from exc


def bulk_decide(
    me: SignedIn,
    name: str,
    job: Annotated[list[uuid.UUID], Form()],
    decision: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "",
) -> Response:
    """The same decision for the items ticked in a queue: each claimed, decided, audited and called back on
    its own (``reviews.decide_many``); an item someone else holds is left out."""
    me.check_csrf(csrf)
    if decision not in ("confirm", "overturn", "escalate"):
        raise Refused(400, "请选择要做的决定。")
    if decision != "confirm" and not reason.strip():
        raise Refused(400, "推翻或升级需要填写理由。")
    try:
        chosen = ModerationAction(action) if decision == "overturn" else None
    except ValueError as exc:
        raise Refused(400, "推翻需要选择正确的处置。") from exc
    with me.services.sessions() as session:
        outcome = reviews.decide_many(
            session, job[:PAGE_SIZE], me.user, decision, reason=reason.strip() or "确认原处置", action=chosen
        )
        session.commit()
    decided = sum(1 for text in outcome.values() if not text.startswith("skipped"))
    return RedirectResponse(f"/review/queue/{name}?done={decided}", status_code=303)


def claim_next(
    me: SignedIn, name: str, csrf: Annotated[str, Form()] = "", rule: Annotated[str | None, Form()] = None
) -> Response:
    """Claim the queue's first free item and open it (keyboard: n)."""
    me.check_csrf(csrf)
    with me.services.sessions() as session:
        job_id = reviews.claim_next(session, me.user, name, rule=rule or None, qa_share=me.qa_share)
        session.commit()
    if job_id is None:
        return RedirectResponse(f"/review/queue/{name}?empty=1", status_code=303)
    return RedirectResponse(f"/review/item/{job_id}?q={name}", status_code=303)


def add_routes(router: APIRouter) -> None:
    """Register this module's pages on the console's router (built by ``console.app.install``)."""
    router.get("/static/{name}")(static)
    router.get("/")(home)
    router.get("/login")(login_form)
    router.post("/login")(login)
    router.post("/logout")(logout)
    router.get("/queue/{name}")(queue_page)
    router.post("/queue/{name}/next")(claim_next)
    router.post("/queue/{name}/bulk")(bulk_decide)
