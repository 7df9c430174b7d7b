"""The policy owner's dashboard: overturn rate per policy rule and per analyzer, as server-drawn SVG bar
charts (no JavaScript, no chart library) and tables, so a threshold that reviewers keep overturning stands out.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.responses import Response

from console.web import SignedIn, page
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
