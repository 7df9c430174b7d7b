"""The knowledge-base overlay in the console (seniors and admins): a rising radar phrase drafted with its
examples in context, a form that keeps what was typed when the matcher refuses it, approval only by another
senior with a reason and a confirmation, retirement — each audited, each a new overlay version."""

from __future__ import annotations

from fastapi.testclient import TestClient

from composition.runtime import Runtime
from lexicon import store as lexicon
from memeguard.db import AuditEntry, RadarKey, Role, utcnow
from radar import store as radar
from review import users
from tests.helpers.console import PASSWORD, add_item, csrf_of, login


def _rising_phrase(runtime: Runtime) -> None:
    from banks import store as banks

    now = utcnow()
    jobs = [add_item(runtime, "tenant-a", f"kb-{n}") for n in range(3)]
    with runtime.sessions() as session:
        for job_id in jobs:
            banks.save_fingerprint(session, job_id, "tenant-a", {}, 100, "我家哈基米又在拆家")
            radar.record(session, job_id, "tenant-a", now, [(radar.PHRASE, "哈基米", now)])
        users.add_user(session, "sue", PASSWORD, Role.SENIOR, ["tenant-a"], actor="t")
        session.commit()


def _client(client: TestClient, username: str) -> TestClient:
    other = TestClient(client.app, follow_redirects=False)
    login(other, username)
    return other


def test_a_lead_drafts_a_radar_phrase_and_another_senior_approves_it(client: TestClient, runtime: Runtime) -> None:
    _rising_phrase(runtime)
    login(client)
    assert client.get("/review/kb").status_code == 403  # reviewers work queues
    sam = _client(client, "sam")
    assert "/review/kb/new?phrase=%E5%93%88%E5%9F%BA%E7%B1%B3" in sam.get("/review/radar").text
    form = sam.get("/review/kb/new", params={"phrase": "哈基米"}).text
    assert "我家哈基米又在拆家" in form and 'name="radar_key" value="哈基米"' in form  # examples in context
    csrf = csrf_of(sam, "/review/kb")
    fields = {"csrf": csrf, "phrases": "哈基米", "meaning": "网络流行语，指猫", "emotion": "amusement",
              "intent": "humor", "harm": "", "weight": "0.5", "radar_key": "哈基米"}  # fmt: skip
    refused = sam.post("/review/kb/new", data={**fields, "examples": "哈基，米饭好吃"})
    assert refused.status_code == 400 and "匹配不到它的例句" in refused.text
    assert "网络流行语，指猫" in refused.text and "哈基，米饭好吃" in refused.text  # what was typed is kept
    created = sam.post("/review/kb/new", data={**fields, "examples": "我家哈基米又在拆家\n哈基米哈基米南北绿豆"})
    assert created.status_code == 303, created.text
    with runtime.sessions() as session:
        (entry,) = lexicon.entries(session, "draft")
        assert session.get(RadarKey, ("phrase", "哈基米")).status == "drafted"  # type: ignore[union-attr]
    assert entry.radar_key == "哈基米" and entry.examples == ["我家哈基米又在拆家", "哈基米哈基米南北绿豆"]
    assert "等待另一位资深审核员批准" in sam.get("/review/kb").text
    own = sam.post(f"/review/kb/{entry.id}/approve", data={"csrf": csrf, "reason": "ok", "confirm": "yes"})
    assert own.status_code == 400 and "另一位资深审核员" in own.text

    sue = _client(client, "sue")
    csrf = csrf_of(sue, "/review/kb")
    approve = {"csrf": csrf, "reason": "常见新梗"}
    assert sue.post(f"/review/kb/{entry.id}/approve", data=approve).status_code == 400  # not confirmed
    assert sue.post(f"/review/kb/{entry.id}/approve", data={**approve, "confirm": "yes"}).status_code == 303
    page = sue.get("/review/kb").text
    serving = page.split('id="kb-serving"')[1].split("</table>")[0]
    assert "哈基米" in serving and f"/review/kb/new?replaces={entry.id}" in serving and 'id="kb-version">v' in page
    revision = sue.get("/review/kb/new", params={"replaces": entry.id}).text
    assert "网络流行语，指猫" in revision and f'name="replaces" value="{entry.id}"' in revision
    retired = sue.post(f"/review/kb/{entry.id}/retire", data={**approve, "reason": "不再流行", "confirm": "yes"})
    assert retired.status_code == 303
    with runtime.sessions() as session:
        assert lexicon.approved(session)[1] == []
        events = [e.event for e in session.query(AuditEntry).filter(AuditEntry.event.like("kb.%"))]
    assert events == ["kb.drafted", "kb.approved", "kb.retired"]
    assert sue.post("/review/kb/9999/reject", data={**approve, "reason": "x"}).status_code == 400
    assert sue.get("/review/kb/new", params={"replaces": 9999}).status_code == 404
