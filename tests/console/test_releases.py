"""The releases page (seniors and admins): what serves, the newest rollout's shadow report with the actions it
would change per rule and example links, the recent rollouts and the registry."""

from __future__ import annotations

from fastapi.testclient import TestClient

from composition.runtime import Runtime
from releases import store as releases
from tests.helpers.console import add_item, login


def test_leads_read_the_shadow_report(client: TestClient, runtime: Runtime) -> None:
    jobs = [add_item(runtime, "tenant-a", f"shadow-{n}") for n in range(3)]
    with runtime.sessions() as session:
        artefact = releases.register(session, "policy", "strict@9", actor="ops", report={"f1": 0.81}, sha256="0" * 64)
        rollout = releases.start(session, str(artefact.id), share=0.25, actor="ops")
        row = dict(
            rollout_id=rollout.id, harm_type="general_offense", rule_id="default", serving_harm_type="general_offense",
            serving_rule_id="medium.offense", latency_ms=0.0, serving_ms=3.0, served="serving", verdict={},
        )  # fmt: skip
        releases.record_shadow(
            session,
            [
                {**row, "job_id": jobs[0], "action": "tag", "serving_action": "tag"},
                {**row, "job_id": jobs[1], "action": "block", "serving_action": "tag"},
                {**row, "job_id": jobs[2], "action": "block", "serving_action": "tag"},
            ],
        )
        session.commit()
    login(client)
    assert client.get("/review/releases").status_code == 403  # reviewers work queues
    lead = TestClient(client.app, follow_redirects=False)
    login(lead, "sam")
    page = lead.get("/review/releases").text
    assert "部署配置的版本" in page and "strict@9" in page and "25% 的线上内容" in page
    summary = page.split('id="shadow-summary"')[1].split("</table>")[0]
    assert "<td>3</td>" in summary and "33.3%" in summary  # one of three would keep its action
    changes = page.split('id="shadow-changes"')[1].split("</table>")[0]
    assert "medium.offense" in changes and "<td>2</td>" in changes
    assert f"/review/item/{jobs[1]}" in changes and f"/review/item/{jobs[0]}" not in changes
    assert "&#34;f1&#34;: 0.81" in page or '"f1": 0.81' in page  # the registered report
    assert lead.get("/review/releases?rollout=999").status_code == 404
