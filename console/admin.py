"""Admin pages: people (add, disable, unlock, change role and tenants). Admins only; every change audited
and CSRF-checked, as the CLI's ``memeguard users`` does the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from console.web import Refused, Reviewer, SignedIn, page
from memeguard.db import Role
from review import users


def _admin(me: Reviewer) -> None:
    if me.user.role is not Role.ADMIN:
        raise Refused(403, "只有管理员可以管理账号。")


def users_page(me: SignedIn, done: str = "") -> Response:
    _admin(me)
    with me.services.sessions() as session:
        people = users.list_users(session)
    return page("users.html", me=me, people=people, roles=list(Role), done=done)


def add_user(
    me: SignedIn,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    role: Annotated[str, Form()],
    tenants: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return _change(
        me,
        csrf,
        lambda s: users.add_user(s, username.strip(), password, _role(role), _tenants(tenants), actor=_actor(me)),
        "added",
    )


def update_user(
    me: SignedIn,
    username: str,
    role: Annotated[str, Form()],
    tenants: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return _change(
        me,
        csrf,
        lambda s: users.update_user(s, username, role=_role(role), tenants=_tenants(tenants), actor=_actor(me)),
        "updated",
    )


def disable_user(me: SignedIn, username: str, csrf: Annotated[str, Form()] = "") -> Response:
    if username == me.user.username:
        raise Refused(400, "不能停用自己的账号。")
    return _change(me, csrf, lambda s: users.disable_user(s, username, actor=_actor(me)), "disabled")


def unlock_user(me: SignedIn, username: str, csrf: Annotated[str, Form()] = "") -> Response:
    return _change(me, csrf, lambda s: users.unlock_user(s, username, actor=_actor(me)), "unlocked")


def _change(me: SignedIn, csrf: str, change: Callable[[Session], object], done: str) -> Response:
    me.check_csrf(csrf)
    _admin(me)
    with me.services.sessions() as session:
        try:
            change(session)
        except users.UserError as exc:
            raise Refused(400, f"未能完成：{exc}") from exc
        session.commit()
    return RedirectResponse(f"/review/admin/users?done={done}", status_code=303)


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError as exc:
        raise Refused(400, "角色只能是 reviewer、senior 或 admin。") from exc


def _tenants(text: str) -> list[str]:
    return [t for t in (part.strip() for part in text.replace("，", ",").split(",")) if t]


def _actor(me: Reviewer) -> str:
    return f"admin:{me.user.username}"


def add_routes(router: APIRouter) -> None:
    """Register this module's pages on the console's router (built by ``console.app.install``)."""
    router.get("/admin/users")(users_page)
    router.post("/admin/users")(add_user)
    router.post("/admin/users/{username}")(update_user)
    router.post("/admin/users/{username}/disable")(disable_user)
    router.post("/admin/users/{username}/unlock")(unlock_user)
