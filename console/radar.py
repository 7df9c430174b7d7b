"""新梗雷达 (seniors and admins): image clusters and phrases first seen in the last 14 days, fastest rising
first — each cluster with thumbnails of its newest copies, first seen, growth, tenants and the verdicts so
far; each phrase with examples in context — and the leads' decisions: put a cluster into a bank (a reason
and a confirmation, as on the banks page), or dismiss a cluster or a phrase. Counts are the reader's tenants'
and, where theirs share (MEMEGUARD_CACHE_SHARED_TENANTS), the sharing tenants'."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response
from sqlalchemy.orm import Session

from banks import store as banks
from console.web import Refused, Reviewer, SignedIn, commit_change, page, require_lead, require_reason, reviewer_actor
from radar import store as radar


def radar_page(me: SignedIn, status: str = "new", done: str = "") -> Response:
    _lead(me)
    if status not in radar.STATUSES:
        raise Refused(400, "状态只能是 new、dismissed、banked 或 drafted。")
    seen = radar.visible_tenants(me.user.tenants, me.services.settings.cache_shared_tenants)
    with me.services.sessions() as session:
        clusters = radar.rising(session, seen, kind=radar.IMAGE, status=status)
        phrases = radar.rising(session, seen, kind=radar.PHRASE, status=status)
        bank_names = [(b.name, b.kind.value) for b, _ in banks.list_banks(session)]
    return page(
        "radar.html",
        me=me,
        clusters=clusters,
        phrases=phrases,
        bank_names=bank_names,
        listed=status,
        statuses=radar.STATUSES,
        done=done,
    )


def dismiss(
    me: SignedIn,
    kind: str,
    key: str,
    reason: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Not new slang, not worth a bank: off the new list, with the reason in the audit log."""
    return _decide(
        me, csrf, reason, lambda s: radar.decide(s, kind, key, "dismissed", actor=reviewer_actor(me), why=reason)
    )


def bank(
    me: SignedIn,
    key: str,
    bank_name: Annotated[str, Form(alias="bank")],
    reason: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """The cluster's image into a bank: every later copy is then decided (or cued, or allowed) by it."""
    return _decide(
        me, csrf, reason, lambda s: radar.bank_cluster(s, key, bank_name, actor=reviewer_actor(me), why=reason), confirm
    )


def _decide(
    me: Reviewer, csrf: str, reason: str, change: Callable[[Session], object], confirm: str = "yes"
) -> Response:
    _lead(me)
    require_reason(reason, confirm)
    return commit_change(me, csrf, change, "/review/radar?done=1", (radar.RadarError, banks.BankError))


def _lead(me: Reviewer) -> None:
    require_lead(me, "新梗雷达只对资深审核员和管理员开放。")


def add_routes(router: APIRouter) -> None:
    """Register this module's pages on the console's router (built by ``console.app.install``)."""
    router.get("/radar")(radar_page)
    router.post("/radar/image/{key}/bank")(bank)
    router.post("/radar/{kind}/{key}/dismiss")(dismiss)
