"""Admin and lead pages: people (admins: add, disable, unlock, change role and tenants) and hash banks
(seniors and admins: state, rollout ratio, hash counts, recent matches, removal and CSV import with a reason
and a confirmation, CSV export). Every change audited and CSRF-checked, as the CLI does the same."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response
from sqlalchemy.orm import Session

from banks import store as banks
from banks.signals import SIGNAL_TYPES
from console.web import Refused, Reviewer, SignedIn, commit_change, page, require_reason
from jobs.replay import replay
from memeguard.db import BankKind, Role, utcnow
from policies import Policy, PolicyError, load_policy, parse_policy
from review import users

MAX_CSV_BYTES = 10_000_000
REFUSALS = (users.UserError, banks.BankError)  # the domain's refusals, shown as a Chinese page


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
    _admin(me)
    return commit_change(me, csrf, change, f"/review/admin/users?done={done}", REFUSALS)


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
    add_bank_routes(router)
    add_policy_routes(router)


def banks_page(me: SignedIn, done: str = "") -> Response:
    """Every bank: kind, label, live hashes, state, rollout ratio, distances, jobs it decided this week."""
    _lead(me)
    with me.services.sessions() as session:
        found = banks.list_banks(session)
        matches = banks.recent_matches(session, utcnow() - timedelta(days=7))
    return page(
        "banks.html", me=me, banks=found, matches=matches, kinds=list(BankKind), signals=list(SIGNAL_TYPES), done=done
    )


def bank_page(me: SignedIn, name: str) -> Response:
    _lead(me)
    with me.services.sessions() as session:
        try:
            hashes = banks.live_hashes(session, name)
        except banks.BankError as exc:
            raise Refused(404, "没有这个指纹库。") from exc
    return page("bank.html", me=me, name=name, hashes=hashes, signals=list(SIGNAL_TYPES))


def configure_bank(
    me: SignedIn,
    name: str,
    ratio: Annotated[float, Form(ge=0.0, le=1.0)],
    enabled: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Enable or disable a bank and set its rollout ratio, with a reason kept in the audit log."""
    require_reason(reason)
    return _bank_change(
        me,
        csrf,
        lambda s: banks.configure_bank(
            s, name, actor=_actor(me), reason=reason.strip(), enabled=enabled == "on", enabled_ratio=ratio
        ),
    )


def remove_hashes(
    me: SignedIn,
    name: str,
    ids: Annotated[list[int], Form()],
    reason: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Remove hashes: a reason and an explicit confirmation (workers stop matching them within a refresh)."""
    require_reason(reason, confirm)
    return _bank_change(
        me, csrf, lambda s: banks.remove_hashes(s, name, ids, actor=_actor(me), reason=reason.strip()), name
    )


async def import_csv(
    me: SignedIn,
    name: str,
    file: Annotated[UploadFile, File()],
    signal: Annotated[str, Form()] = "pdq",
    reason: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """A CSV file of one hash type into the bank (one bad line rejects the file), with a reason."""
    require_reason(reason, confirm)
    try:
        text = (await file.read(MAX_CSV_BYTES + 1)).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(400, "CSV 文件须为 UTF-8 编码。") from exc
    if len(text.encode()) > MAX_CSV_BYTES:
        raise Refused(413, "CSV 文件过大。")
    source = f"console:{file.filename or 'upload.csv'}"
    return _bank_change(
        me,
        csrf,
        lambda s: banks.import_csv(
            s, name, text, actor=_actor(me), source=source, signal=signal, reason=reason.strip()
        ),
        name,
    )


def export_csv(me: SignedIn, name: str, signal: str = "pdq") -> Response:
    _lead(me)
    with me.services.sessions() as session:
        try:
            text = banks.export_csv(session, name, signal)
        except banks.BankError as exc:
            raise Refused(404, "没有这个指纹库或哈希类型。") from exc
    disposition = f'attachment; filename="{name}-{signal}.csv"'
    return Response(text, media_type="text/csv; charset=utf-8", headers={"Content-Disposition": disposition})


def _bank_change(me: SignedIn, csrf: str, change: Callable[[Session], object], name: str = "") -> Response:
    _lead(me)
    then = f"/review/admin/banks/{name}" if name else "/review/admin/banks?done=1"
    return commit_change(me, csrf, change, then, REFUSALS)


def _lead(me: Reviewer) -> None:
    if me.user.role is Role.REVIEWER:
        raise Refused(403, "只有资深审核员和管理员可以管理指纹库。")


def add_bank_routes(router: APIRouter) -> None:
    router.get("/admin/banks")(banks_page)
    router.get("/admin/banks/{name}")(bank_page)
    router.post("/admin/banks/{name}")(configure_bank)
    router.post("/admin/banks/{name}/remove")(remove_hashes)
    router.post("/admin/banks/{name}/import")(import_csv)
    router.get("/admin/banks/{name}/export")(export_csv)


def policy_page(me: SignedIn) -> Response:
    """The policy in force: name@version, default action, every rule in order with its conditions."""
    _lead(me)
    return page("policy.html", me=me, policy=_policy_in_force(me), report=None, days=7)


async def policy_preview(
    me: SignedIn,
    file: Annotated[UploadFile, File()],
    days: Annotated[int, Form(ge=1, le=365)] = 7,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """A candidate policy replayed over the last ``days`` days' verdicts before it ships: how many actions
    would change, per transition and per rule, with example items. Nothing is written."""
    me.check_csrf(csrf)
    _lead(me)
    try:
        candidate = parse_policy((await file.read(MAX_CSV_BYTES)).decode("utf-8"), source=file.filename or "upload")
    except (PolicyError, UnicodeDecodeError) as exc:
        raise Refused(400, f"策略文件无效：{exc}") from exc
    with me.services.sessions() as session:
        report = replay(session, candidate, since=utcnow() - timedelta(days=days))
    return page("policy.html", me=me, policy=_policy_in_force(me), report=report, candidate=candidate, days=days)


def _policy_in_force(me: SignedIn) -> Policy:
    return load_policy(me.services.settings.policy_file)


def add_policy_routes(router: APIRouter) -> None:
    router.get("/admin/policy")(policy_page)
    router.post("/admin/policy")(policy_preview)
