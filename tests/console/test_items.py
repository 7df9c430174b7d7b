"""The item page over HTTP: what a reviewer sees, the image that only they can fetch, claim → decide
(alone and in bulk), adding an image to a bank, and every refusal (anonymous, wrong tenant, wrong role,
missing CSRF token, no claim)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from banks import store as banks
from composition.runtime import Runtime
from jobs import store
from memeguard.db import AuditEntry, BankKind
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


def test_overturn_on_an_unclaimed_item_claims_it_and_changes_the_action(
    client: TestClient, runtime: Runtime, mine: uuid.UUID
) -> None:
    """Deciding takes the claim when nobody holds the item (no 409 page, one step less per item)."""
    login(client)
    assert client.post(f"/review/item/{mine}/claim", data={}).status_code == 403  # no CSRF token
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
    form = {"csrf": csrf_of(senior), "bank": "known-harmful"}
    for missing, why in (({}, "需要填写理由"), ({"note": "复审确认"}, "请勾选确认")):
        refused = senior.post(f"/review/item/{mine}/bank", data={**form, **missing})
        assert refused.status_code == 400 and why in refused.text  # one click never banks an image
    added = senior.post(f"/review/item/{mine}/bank", data={**form, "note": "复审确认", "confirm": "yes"})
    assert added.status_code == 303
    with runtime.sessions() as session:
        assert [(b.name, n) for b, n in banks.list_banks(session)] == [("known-harmful", 1)]
        assert store.audit_events(session, mine)[-1] == "bank.hashes_added"
        reasons = session.scalars(sa.select(AuditEntry.detail).where(AuditEntry.event == "bank.hashes_added"))
        assert [d.get("reason") for d in reasons] == ["复审确认"]
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


def test_an_overturn_must_change_the_action_or_a_label(client: TestClient, runtime: Runtime, mine: uuid.UUID) -> None:
    """An "overturn" to the same action with the same labels changed nothing (and drew a 100 % overturn as an
    empty bar in 统计): refused in Chinese. The form preselects the current action and shows the labels."""
    login(client)
    page = client.get(f"/review/item/{mine}").text
    assert '<option value="tag" selected>' in page and "（不改：一般冒犯）" in page
    same = decide(client, mine, decision="overturn", action="tag", reason="其实没问题")
    assert same.status_code == 400 and "推翻必须改变处置或标签" in same.text
    relabelled = decide(
        client, mine, decision="overturn", action="tag", harm_type="targeted_harm", reason="是针对群体的攻击"
    )
    assert relabelled.status_code == 303 and action_of(runtime, mine) is ModerationAction.TAG


def test_an_item_someone_else_holds_shows_no_forms_and_refuses_in_chinese(
    client: TestClient, runtime: Runtime, mine: uuid.UUID
) -> None:
    senior = TestClient(client.app, follow_redirects=False)
    login(senior, "sam")
    senior.post(f"/review/item/{mine}/claim", data={"csrf": csrf_of(senior)})
    login(client)
    page = client.get(f"/review/item/{mine}").text
    assert "sam 正在审核此条目" in page and 'id="confirm-form"' not in page
    refused = decide(client, mine, decision="confirm")
    assert refused.status_code == 409 and "sam 正在审核此条目" in refused.text and "claimed by" not in refused.text
    assert 'href="/review/stats"' in refused.text  # an error page has a way out


@pytest.mark.parametrize("path", ["/review/item/not-a-uuid", "/review/nowhere", "/review/item/1/image"])
def test_malformed_ids_and_unknown_console_paths_are_chinese_pages(client: TestClient, path: str) -> None:
    login(client)
    answer = client.get(path)
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    assert "没有这个" in answer.text and "detail" not in answer.text


def test_signals_read_as_chinese_sentences_with_the_ids_on_hover(
    client: TestClient, runtime: Runtime, meme_png: bytes
) -> None:
    from memeguard.schemas import Signal

    signals = [
        Signal(source="kb", decided=["harm_type"], evidence=["insult.shen-gou:死狗"], weight=0.9),
        Signal(source="classifier", decided=["confidence"], evidence=["targeted_harm p=0.873", "counter_speech"]),
        Signal(source="fingerprint", evidence=["no known meme"]),
    ]
    job = add_item(runtime, "tenant-a", "signals", image=meme_png, signals=signals)
    login(client)
    table = client.get(f"/review/item/{job}").text.split('id="signals"')[1].split("</table>")[0]
    for sentence in (
        "知识库词条「死狗」命中",
        "判为针对性伤害，概率 0.873",
        "读作反驳歧视的言论",
        "未命中已知梗图",
        "危害类型",
    ):
        assert sentence in table, sentence
    assert 'title="insult.shen-gou:死狗"' in table and "no known meme" not in table.replace('title="no known meme"', "")


def test_the_reasons_an_item_is_here_come_before_the_decision_panel(
    client: TestClient, runtime: Runtime, mine: uuid.UUID
) -> None:
    from review import reviews, users

    with runtime.sessions() as session:
        ann = next(u for u in users.list_users(session) if u.username == "ann")
        reviews.decide(session, mine, ann, "escalate", reason="疑似新型地域黑")
        session.commit()
    senior = TestClient(client.app, follow_redirects=False)
    login(senior, "sam")
    page = senior.get(f"/review/item/{mine}").text
    assert page.index("疑似新型地域黑") < page.index('id="decide"') < page.index('id="audit"')
