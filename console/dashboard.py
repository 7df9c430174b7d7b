"""The policy owner's dashboard (统计: overturn rate per policy rule and per analyzer) and the leads' overview
(总览: actions per day, automated vs human, pending per queue with the oldest wait, top harm types, QA
agreement per reviewer and per rule, over a date range), as server-drawn SVG charts (no JavaScript, no chart
library) and tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter
from fastapi.responses import Response

from console.web import Refused, SignedIn, page
from memeguard.db import Role, utcnow
from review import overview as review_overview
from review import reviews
from review import views as review_views

BAR_WIDTH = 420  # px for a 100 % overturn rate
ROW_HEIGHT = 26


@dataclass(frozen=True)
class Bar:
    """One chart row: the stricter part (reviewers chose a harsher action), the looser part and the part
    relabelled under the same action, in px: together they are the overturn rate."""

    y: int
    label: str
    stricter_px: float
    looser_px: float
    relabel_px: float
    text: str


def bars(stats: list[review_views.OverturnStat]) -> list[Bar]:
    """Chart geometry; rows with no reviews are left out (nothing to say yet)."""
    rows = [s for s in stats if s.reviewed]
    return [
        Bar(
            i * ROW_HEIGHT,
            s.key,
            BAR_WIDTH * s.stricter / s.reviewed,
            BAR_WIDTH * s.looser / s.reviewed,
            BAR_WIDTH * s.relabelled / s.reviewed,
            f"{s.rate:.0%}（{s.overturned}/{s.reviewed}）",
        )
        for i, s in enumerate(rows)
    ]


def stats_page(me: SignedIn) -> Response:
    with me.services.sessions() as session:
        by_rule = review_views.overturn_stats(session, me.user, "rule")
        by_analyzer = review_views.overturn_stats(session, me.user, "analyzer")
        sizes = reviews.queue_sizes(session, me.user, me.qa_share)
    charts = [("按策略规则", by_rule, bars(by_rule)), ("按分析器", by_analyzer, bars(by_analyzer))]
    return page("stats.html", me=me, sizes=sizes, charts=charts, bar_width=BAR_WIDTH, row_height=ROW_HEIGHT)


def add_routes(router: APIRouter) -> None:
    """Register this module's pages on the console's router (built by ``console.app.install``)."""
    router.get("/stats")(stats_page)
    add_overview_routes(router)


ACTION_ORDER = ("allow", "throttle", "tag", "block")
DAY_WIDTH, CHART_HEIGHT = 28, 160


@dataclass(frozen=True)
class Column:
    """One day's stacked bar: (action, y, height) segments in px, and the day's label."""

    x: int
    label: str
    segments: list[tuple[str, float, float]]
    total: int


def columns(daily: dict[date, dict[str, int]]) -> list[Column]:
    """Stacked bars of the actions taken per day, scaled to the busiest day."""
    peak = max((sum(d.values()) for d in daily.values()), default=0) or 1
    out = []
    for i, (day, counts) in enumerate(daily.items()):
        y, segments = float(CHART_HEIGHT), []
        for action in ACTION_ORDER:
            height = CHART_HEIGHT * counts.get(action, 0) / peak
            y -= height
            segments.append((action, y, height))
        out.append(Column(i * DAY_WIDTH, day.strftime("%m-%d"), segments, sum(counts.values())))
    return out


MAX_RANGE = timedelta(days=366)


def overview_page(me: SignedIn, since: str = "", until: str = "") -> Response:
    """Leads' overview over a date range (default: the last 14 days), within the reader's tenants."""
    if me.user.role is Role.REVIEWER:
        raise Refused(403, "总览只对资深审核员和管理员开放。")
    try:
        end = date.fromisoformat(until) if until else utcnow().date()
        start = date.fromisoformat(since) if since else end - timedelta(days=13)
    except ValueError as exc:
        raise Refused(400, "日期写作 2026-12-01。") from exc
    if not timedelta(0) <= end - start < MAX_RANGE:
        raise Refused(400, f"起始日期须不晚于结束日期，范围最长 {MAX_RANGE.days} 天。")
    with me.services.sessions() as session:
        data = review_overview.overview(session, me.user, _at(start), _at(end + timedelta(days=1)), me.qa_share)
        session.commit()  # the ended days it counted for the first time (daily_counts)
    return page(
        "overview.html",
        me=me,
        data=data,
        since=start.isoformat(),
        until=end.isoformat(),
        columns=columns(data.daily),
        day_width=DAY_WIDTH,
        chart_height=CHART_HEIGHT,
        now=utcnow(),
    )


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def add_overview_routes(router: APIRouter) -> None:
    router.get("/overview")(overview_page)
