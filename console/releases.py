"""Releases (seniors and admins): what serves each kind, the running rollout's shadow report — agreement
with what serves, the actions it would change per policy rule with example items, each one's agreement with
reviewers on the items reviewed since, reading latency — the recent rollouts and the registry. Read-only:
starting, promoting and rolling back are operators' commands (``memeguard shadow …``), one each, audited."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import Response

from console.web import Refused, Reviewer, SignedIn, page, require_lead
from memeguard.db import Rollout
from releases import store as releases
from releases.report import report

RECENT = 10


def releases_page(me: SignedIn, rollout: int | None = None) -> Response:
    _lead(me)
    with me.services.sessions() as session:
        serving = {kind: releases.serving(session, kind) for kind in releases.LIVE_KINDS}
        recent = list(session.scalars(sa.select(Rollout).order_by(Rollout.id.desc()).limit(RECENT)))
        shown = rollout or (recent[0].id if recent else None)
        try:
            found = report(session, shown) if shown else None
        except releases.ReleaseError as exc:
            raise Refused(404, "没有这次发布。") from exc
        registry = releases.artefacts(session)[:50]
    return page("releases.html", me=me, serving=serving, recent=recent, report=found, registry=registry)


def _lead(me: Reviewer) -> None:
    require_lead(me, "发布与影子对比只对资深审核员和管理员开放。")


def add_routes(router: APIRouter) -> None:
    """Register this module's pages on the console's router (built by ``console.app.install``)."""
    router.get("/releases")(releases_page)
