"""The item page over HTTP: what a reviewer sees, the image that only they can fetch, claim → decide
(alone and in bulk), adding an image to a bank, and every refusal (anonymous, wrong tenant, wrong role,
missing CSRF token, no claim)."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from banks import store as banks
from composition.runtime import Runtime
from jobs import store
from memeguard.db import BankKind
from memeguard.schemas import ModerationAction
from tests.helpers.console import add_item, csrf_of, login


def action_of(runtime: Runtime, job_id: uuid.UUID) -> ModerationAction:
    with runtime.sessions() as session:
        return store.current_action(session, job_id).action  # type: ignore[union-attr]


def decide(client: TestClient, job_id: uuid.UUID, **form: str):  # type: ignore[no-untyped-def]
    return client.post(f"/review/item/{job_id}/decide", data={"csrf": csrf_of(client), **form})


def test_the_item_page_shows_what_decided(client: TestClient, mine: uuid.UUID) -> None:
    login(client)
    page = client.get(f"/review/item/{mine}")
    assert page.status_code == 200
    for shown in (
        "你说得对，但是我不听",
        "你说得对 但是我不听",
        "讽刺/阴阳怪气",
        "轻蔑",
        "一般冒犯",
        "0.70",
        '轻蔑 <span class="muted">（0.64）</span>',
        "（0.80）",
        "embedded 3",
        "medium.harmful",
        "default 3",
        f"/review/item/{mine}/image",
        "你说得对，但是",
        "打标",
    ):
        assert shown in page.text, shown


def test_the_image_is_served_only_to_signed_in_reviewers_of_its_tenant(
    client: TestClient, mine: uuid.UUID, theirs: uuid.UUID, meme_png: bytes
) -> None:
    anonymous = client.get(f"/review/item/{mine}/image")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/review/login"
    login(client)
    image = client.get(f"/review/item/{mine}/image")
    assert image.status_code == 200 and image.content == meme_png and image.headers["content-type"] == "image/png"
    assert image.headers["cache-control"] == "private, no-store"
    assert client.get(f"/review/item/{theirs}/image").status_code == 404  # another tenant's: does not exist
    assert client.get(f"/review/item/{theirs}").status_code == 404


def test_claim_then_overturn_changes_the_action_and_shows_the_audit_entry(
    client: TestClient, runtime: Runtime, mine: uuid.UUID
) -> None:
    login(client)
    assert decide(client, mine, decision="overturn", action="allow", reason="玩梗").status_code == 409  # unclaimed
    assert client.post(f"/review/item/{mine}/claim", data={}).status_code == 403  # no CSRF token
    assert client.post(f"/review/item/{mine}/claim", data={"csrf": csrf_of(client)}).status_code == 303
    assert decide(client, mine, decision="overturn", action="allow", reason="").status_code == 400  # no reason
    done = decide(client, mine, decision="overturn", action="allow", harm_type="none", reason="朋友间玩梗，无恶意")
    assert done.status_code == 303 and "done=overturn" in done.headers["location"]
    assert action_of(runtime, mine) is ModerationAction.ALLOW
    page = client.get(done.headers["location"]).text
    assert "review.overturn" in page and "reviewer:ann" in page and "朋友间玩梗，无恶意" in page
    assert 'id="current-action">放行' in page


def test_a_forged_csrf_token_changes_nothing(client: TestClient, runtime: Runtime, mine: uuid.UUID) -> None:
    login(client)
    client.post(f"/review/item/{mine}/claim", data={"csrf": csrf_of(client)})
    forged = client.post(
        f"/review/item/{mine}/decide", data={"csrf": "x" * 32, "decision": "overturn", "action": "allow", "reason": "r"}
    )
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert action_of(runtime, mine) is ModerationAction.TAG


def test_another_tenants_item_cannot_be_claimed_or_decided(client: TestClient, theirs: uuid.UUID) -> None:
    login(client)
    token = csrf_of(client)
    assert client.post(f"/review/item/{theirs}/claim", data={"csrf": token}).status_code == 404
    assert decide(client, theirs, decision="confirm").status_code == 404


def test_bulk_decides_every_identical_image(
    client: TestClient, runtime: Runtime, meme_png: bytes, mine: uuid.UUID
) -> None:
    copies = [add_item(runtime, "tenant-a", f"copy-{i}", image=meme_png) for i in range(3)]
    login(client)
    page = client.get(f"/review/item/{mine}").text
    assert "同时处理 3 条相同指纹的条目" in page
    client.post(f"/review/item/{mine}/claim", data={"csrf": csrf_of(client)})
    done = decide(client, mine, decision="overturn", action="block", reason="已知有害图", bulk="1")
    assert "n=3" in done.headers["location"]
    assert {action_of(runtime, j) for j in [mine, *copies]} == {ModerationAction.BLOCK}


def test_only_seniors_add_images_to_banks(client: TestClient, runtime: Runtime, mine: uuid.UUID) -> None:
    with runtime.sessions() as session:
        banks.create_bank(session, "known-harmful", BankKind.HARMFUL, "targeted_harm", actor="t")
        banks.save_fingerprint(session, mine, "tenant-a", {"pdq": "f" * 64, "phash": "0" * 16}, 100, "text")
        session.commit()
    login(client)
    assert "加入指纹库" not in client.get(f"/review/item/{mine}").text
    refused = client.post(f"/review/item/{mine}/bank", data={"csrf": csrf_of(client), "bank": "known-harmful"})
    assert refused.status_code == 403
    senior = TestClient(client.app, follow_redirects=False)
    login(senior, "sam")
    added = senior.post(
        f"/review/item/{mine}/bank", data={"csrf": csrf_of(senior), "bank": "known-harmful", "note": "复审确认"}
    )
    assert added.status_code == 303
    with runtime.sessions() as session:
        assert [(b.name, n) for b, n in banks.list_banks(session)] == [("known-harmful", 1)]
        assert store.audit_events(session, mine)[-1] == "bank.hashes_added"
    page = senior.get(added.headers["location"]).text
    assert "已记录：加入指纹库" in page and "reviewer:sam" in page and "bank=known-harmful" in page


@pytest.mark.parametrize("decision", ["bogus", ""])
def test_unknown_decisions_are_refused_by_name(client: TestClient, mine: uuid.UUID, decision: str) -> None:
    login(client)
    client.post(f"/review/item/{mine}/claim", data={"csrf": csrf_of(client)})
    response = decide(client, mine, decision=decision or "none")
    assert response.status_code == 400 and "未知的决定" in response.text


def test_the_queue_a_reviewer_came_from_is_kept_only_if_it_is_a_queue(client: TestClient, mine: uuid.UUID) -> None:
    login(client)
    kept = client.post(f"/review/item/{mine}/claim", data={"csrf": csrf_of(client), "q": "low_confidence"})
    assert kept.headers["location"] == f"/review/item/{mine}?q=low_confidence"
    odd = client.post(f"/review/item/{mine}/claim", data={"csrf": csrf_of(client), "q": "tagged&done=bank"})
    assert odd.headers["location"] == f"/review/item/{mine}?q=tagged"  # nothing smuggled into the redirect
