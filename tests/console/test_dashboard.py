"""The dashboard over HTTP: overturn rates per rule and per analyzer, drawn as SVG bars, tenant-scoped."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from composition.runtime import Runtime
from console.dashboard import BAR_WIDTH, bars
from review.views import OverturnStat
from tests.helpers.console import add_item, csrf_of, login


def test_bars_split_stricter_looser_and_relabelled_overturns() -> None:
    drawn = bars([OverturnStat("r1", 4, 3, 1, 1, 1), OverturnStat("r2", 0, 0, 0, 0, 0)])
    assert len(drawn) == 1  # nothing reviewed: nothing to draw
    assert (drawn[0].stricter_px, drawn[0].looser_px, drawn[0].relabel_px) == (BAR_WIDTH / 4,) * 3
    assert drawn[0].text == "75%（3/4）"


def test_an_overturn_that_only_relabels_is_drawn_not_an_empty_bar(client: TestClient, runtime: Runtime) -> None:
    """Regression: a 100 % overturn rate drew an empty bar when reviewers kept the action (it was neither
    stricter nor looser). Same-action overturns must now change a label, and they are drawn in their own
    colour."""
    job_id = add_item(runtime, "tenant-a", "relabel")
    login(client)
    form = {"csrf": csrf_of(client), "decision": "overturn", "action": "tag", "harm_type": "none", "reason": "读错了"}
    assert client.post(f"/review/item/{job_id}/decide", data=form).status_code == 303
    page = client.get("/review/stats").text
    widths = re.findall(r'width="([\d.]+)" height="\d+" class="relabel"', page)
    assert widths and float(widths[0]) == BAR_WIDTH and "100%（1/1）" in page


def test_the_dashboard_charts_overturns_of_my_tenants(client: TestClient, runtime: Runtime) -> None:
    items = [add_item(runtime, "tenant-a", f"s-{i}") for i in range(4)]
    add_item(runtime, "tenant-b", "theirs")
    login(client)
    for job_id, decision in zip(items, ["overturn", "overturn", "overturn", "confirm"], strict=True):
        client.post(f"/review/item/{job_id}/claim", data={"csrf": csrf_of(client)})
        client.post(
            f"/review/item/{job_id}/decide",
            data={"csrf": csrf_of(client), "decision": decision, "action": "allow", "reason": "误判"},
        )
    page = client.get("/review/stats")
    assert page.status_code == 200 and page.text.count("<svg") == 2
    assert "medium.harmful @ 3" in page.text and "embedded 3" in page.text and "75%（3/4）" in page.text
    looser = re.findall(r'class="looser"', page.text)
    assert len(looser) == 2  # one bar per chart: the rule and the analyzer
    anonymous = TestClient(client.app, follow_redirects=False)
    assert anonymous.get("/review/stats").headers["location"] == "/review/login"


def test_the_overview_charts_actions_queues_harms_and_qa_agreement(client: TestClient, runtime: Runtime) -> None:
    """总览 (seniors and admins): actions per day as stacked SVG bars, automated vs human, pending per queue
    with the oldest wait, top harm types, QA agreement per reviewer and per rule, over a date range."""
    from memeguard.schemas import HarmType

    runtime.settings.review_qa_share = 1.0  # every automatic allow and block is in the QA sample
    sampled = [add_item(runtime, "tenant-a", f"qa-{i}", harm=HarmType.NONE) for i in range(2)]
    add_item(runtime, "tenant-a", "waiting")
    login(client)
    assert client.get("/review/overview").status_code == 403  # reviewers work queues; leads read this
    for job_id, decision in zip(sampled, ["confirm", "overturn"], strict=True):
        form = {"csrf": csrf_of(client), "decision": decision, "action": "tag", "reason": "质检"}
        assert client.post(f"/review/item/{job_id}/decide", data=form).status_code == 303
    senior = TestClient(client.app, follow_redirects=False)
    login(senior, "sam")
    page = senior.get("/review/overview").text
    assert page.count('class="act-allow"') + page.count('class="act-tag"') >= 1  # the day's stacked bar
    assert "自动处置 3，人工处置 1" in page and "人工占 25.0%" in page
    pending = page.split('id="pending"')[1].split("</table>")[0]
    assert "打标" in pending and "小时" in pending
    qa = page.split("按审核员")[1].split("</table>")[0]
    assert "<td>ann</td><td>2</td><td>1</td><td>50.0%</td>" in qa
    assert "一般冒犯" in page.split('id="harms"')[1]  # harm types in Chinese
    from datetime import timedelta

    from memeguard.db import utcnow

    today = utcnow().date()
    three = senior.get(f"/review/overview?since={today - timedelta(days=2)}&until={today}").text
    assert three.count('class="label small"') == 3  # every day of the range drawn, quiet days included
    empty = senior.get("/review/overview?since=2020-01-01&until=2020-01-02").text
    assert "这段时间没有处置" in empty
    assert senior.get("/review/overview?since=someday").status_code == 400
    too_long = senior.get("/review/overview?since=2020-01-01&until=2026-01-01")  # counted days: at most a year
    assert too_long.status_code == 400 and "366" in too_long.text
    assert senior.get("/review/overview?since=2026-01-02&until=2026-01-01").status_code == 400
