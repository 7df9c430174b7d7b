"""Protecting reviewers: their own setting for blurred harmful images, stepping away from a queue, and the
leads' page of daily exposure per reviewer (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse, Response

from console.web import Refused, SignedIn, page
from memeguard.db import Role
from review import reviews, wellness


def my_settings(me: SignedIn, saved: int = 0) -> Response:
    return page("me.html", me=me, saved=saved)


def set_preferences(
    me: SignedIn,
    csrf: Annotated[str, Form()] = "",
    shield: Annotated[str, Form()] = "",
    auto_next: Annotated[str, Form()] = "",
) -> Response:
    me.check_csrf(csrf)
    with me.services.sessions() as session:
        wellness.set_preferences(session, me.user, shield_images=shield == "on", auto_next=auto_next == "on")
        session.commit()
    return RedirectResponse("/review/me?saved=1", status_code=303)


def take_break(me: SignedIn, name: str, csrf: Annotated[str, Form()] = "") -> Response:
    """Step away: the reviewer's claims go back to the queue, and a page with no images says so."""
    me.check_csrf(csrf)
    if name not in reviews.QUEUES:
        raise Refused(404, "没有这个队列。")
    with me.services.sessions() as session:
        released = wellness.take_break(session, me.user, name)
        session.commit()
    return page("break.html", me=me, name=name, released=released)


def exposure_page(me: SignedIn) -> Response:
    if me.user.role is not Role.ADMIN:
        raise Refused(403, "只有管理员可以查看审核员的每日接触量。")
    with me.services.sessions() as session:
        rows = wellness.exposures(session)
    return page("exposure.html", me=me, rows=rows)


def add_routes(router: APIRouter) -> None:
    """Register this module's pages on the console's router (built by ``console.app.install``)."""
    router.get("/me")(my_settings)
    router.post("/me")(set_preferences)
    router.post("/queue/{name}/break")(take_break)
    router.get("/admin/exposure")(exposure_page)
