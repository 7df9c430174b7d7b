"""新梗雷达 in the console (seniors and admins): what rises, with thumbnails and examples; a cluster put into a
bank with a reason and a confirmation, a phrase dismissed — each audited and off the new list."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi.testclient import TestClient

from composition.runtime import Runtime
from memeguard.db import AuditEntry, BankKind, utcnow
from radar import store as radar
from tests.helpers.console import add_item, csrf_of, login


def _spreading(runtime: Runtime, meme_png: bytes) -> tuple[str, list[uuid.UUID]]:
    """A cluster and a phrase seen five times today in tenant-a (the radar's counts, as workers write them)."""
    from banks import store as banks
    from banks.signals import compute, hash_frames
    from memeguard.imaging import decode_frames

    jobs = [add_item(runtime, "tenant-a", f"radar-{n}", image=meme_png) for n in range(5)]
    hashes = hash_frames(decode_frames(meme_png, 1))
    now = utcnow()
    with runtime.sessions() as session:
        for n, job_id in enumerate(jobs):
            banks.save_fingerprint(
                session, job_id, "tenant-a", compute(hashes), hashes[0].quality, "你说得对但是我不听"
            )
            keys = [(radar.IMAGE, str(jobs[0]), now), (radar.PHRASE, "哈基米", now)]
            radar.record(session, job_id, "tenant-a", now - timedelta(minutes=n), keys)
        session.commit()
    return str(jobs[0]), jobs


def test_leads_see_what_rises_and_bank_a_cluster_or_dismiss_a_phrase(
    client: TestClient, runtime: Runtime, meme_png: bytes
) -> None:
    from banks import store as banks

    cluster, jobs = _spreading(runtime, meme_png)
    with runtime.sessions() as session:
        banks.create_bank(session, "radar-found", BankKind.HARMFUL, "general_offense", actor="t")
        session.commit()
    login(client)
    assert client.get("/review/radar").status_code == 403  # reviewers work queues
    lead = TestClient(client.app, follow_redirects=False)
    login(lead, "sam")
    page = lead.get("/review/radar").text
    images = page.split('id="radar-images"')[1].split("</table>")[0]
    assert f"/review/item/{jobs[0]}/thumb" in images and f"/review/item/{jobs[4]}/thumb" not in images
    assert "<td>5</td>" in images  # the three newest copies shown; five today
    phrases = page.split('id="radar-phrases"')[1].split("</table>")[0]
    assert "哈基米" in phrases and "你说得对" in phrases  # the phrase, with the text it was seen in
    csrf = csrf_of(lead, "/review/radar")
    form = {"csrf": csrf, "bank": "radar-found", "reason": "新的辱骂梗"}
    assert lead.post(f"/review/radar/image/{cluster}/bank", data=form).status_code == 400  # not confirmed
    banked = lead.post(f"/review/radar/image/{cluster}/bank", data={**form, "confirm": "yes"})
    assert banked.status_code == 303, banked.text
    dismissed = lead.post("/review/radar/phrase/哈基米/dismiss", data={"csrf": csrf, "reason": "普通用语"})
    assert dismissed.status_code == 303
    after = lead.get("/review/radar").text
    assert cluster not in after and "哈基米" not in after.split('id="radar-phrases"')[1]
    assert cluster in lead.get("/review/radar?status=banked").text
    with runtime.sessions() as session:
        assert [h.note for h in banks.live_hashes(session, "radar-found")] == [f"radar cluster {cluster}: 新的辱骂梗"]
        events = {e.event for e in session.query(AuditEntry).filter(AuditEntry.event.like("radar.%"))}
    assert events == {"radar.banked", "radar.dismissed"}
    assert lead.get("/review/radar?status=everything").status_code == 400
    assert lead.post("/review/radar/phrase/无此词/dismiss", data={"csrf": csrf, "reason": "x"}).status_code == 400
