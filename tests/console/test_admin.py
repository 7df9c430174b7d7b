"""Admin pages: people managed from the console (admins only, CSRF-checked, audited)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from composition.runtime import Runtime
from memeguard.db import AuditEntry, Role
from review import users
from tests.helpers.console import PASSWORD, csrf_of, login


def admin_client(client: TestClient, runtime: Runtime) -> TestClient:
    with runtime.sessions() as session:
        users.add_user(session, "ada", PASSWORD, Role.ADMIN, ["tenant-a"], actor="t")
        session.commit()
    admin = TestClient(client.app, follow_redirects=False)
    login(admin, "ada")
    return admin


def test_admins_add_change_unlock_and_disable_accounts(client: TestClient, runtime: Runtime) -> None:
    admin = admin_client(client, runtime)
    token = csrf_of(admin, "/review/admin/users")
    form = {
        "csrf": token,
        "username": "bob",
        "password": "a long enough pass",
        "role": "reviewer",
        "tenants": "tenant-a",
    }
    assert admin.post("/review/admin/users", data=form).status_code == 303
    changed = admin.post(
        "/review/admin/users/bob", data={"csrf": token, "role": "senior", "tenants": "tenant-a, tenant-b"}
    )
    assert changed.status_code == 303
    with runtime.sessions() as session:
        for _ in range(users.LOCK_AFTER):
            users.authenticate(session, "bob", "wrong password!!")
        session.commit()
    page = admin.get("/review/admin/users").text
    assert "locked until" in page and "/review/admin/users/bob/unlock" in page
    assert admin.post("/review/admin/users/bob/unlock", data={"csrf": token}).status_code == 303
    assert admin.post("/review/admin/users/bob/disable", data={"csrf": token}).status_code == 303
    with runtime.sessions() as session:
        bob = next(u for u in users.list_users(session) if u.username == "bob")
        events = list(session.scalars(sa.select(AuditEntry.event).where(AuditEntry.event.like("user.%"))))
    assert (bob.role, bob.tenants, bob.disabled) == (Role.SENIOR, ("tenant-a", "tenant-b"), True)
    assert {"user.added", "user.updated", "user.unlocked", "user.disabled"} <= set(events)
    refused = admin.post("/review/admin/users", data={**form, "username": "eve", "password": "short"})
    assert refused.status_code == 400 and "未能完成" in refused.text
    assert admin.post("/review/admin/users/ada/disable", data={"csrf": token}).status_code == 400  # not oneself


def test_only_admins_manage_accounts(client: TestClient) -> None:
    login(client)
    assert client.get("/review/admin/users").status_code == 403
    token = csrf_of(client)
    assert client.post("/review/admin/users/sam/disable", data={"csrf": token}).status_code == 403
    assert client.post("/review/admin/users/sam", data={"role": "admin", "tenants": ""}).status_code == 403


def test_leads_curate_banks_from_a_page_with_reasons(client: TestClient, runtime: Runtime) -> None:
    from banks import store as banks
    from memeguard.db import BankKind

    with runtime.sessions() as session:
        banks.create_bank(session, "bad-gifs", BankKind.HARMFUL, "sexual_innuendo", actor="t")
        session.commit()
    login(client)
    assert client.get("/review/admin/banks").status_code == 403  # reviewers do not curate banks
    senior = TestClient(client.app, follow_redirects=False)
    login(senior, "sam")
    listing = senior.get("/review/admin/banks").text
    assert "bad-gifs" in listing and "vpdq≤31" in listing
    token = csrf_of(senior, "/review/admin/banks")
    csv = ("hash\n" + "a" * 64 + ",90,first\n").encode()
    upload = {"file": ("bank.csv", csv, "text/csv")}
    refused = senior.post("/review/admin/banks/bad-gifs/import", data={"csrf": token, "signal": "pdq"}, files=upload)
    assert refused.status_code == 400 and "理由" in refused.text  # no reason, no import
    form = {"csrf": token, "signal": "pdq", "reason": "ThreatExchange 共享", "confirm": "yes"}
    assert senior.post("/review/admin/banks/bad-gifs/import", data=form, files=upload).status_code == 303
    exported = senior.get("/review/admin/banks/bad-gifs/export?signal=pdq")
    assert exported.text == "a" * 64 + ",90,first\n" and "attachment" in exported.headers["content-disposition"]
    [added] = banks.live_hashes(runtime.sessions(), "bad-gifs")
    configured = {"csrf": token, "ratio": "0.5", "enabled": "on", "reason": "灰度一半"}
    assert senior.post("/review/admin/banks/bad-gifs", data=configured).status_code == 303
    removed = {"csrf": token, "ids": [str(added.id)], "reason": "误收", "confirm": "yes"}
    assert senior.post("/review/admin/banks/bad-gifs/remove", data=removed).status_code == 303
    with runtime.sessions() as session:
        [(bank, count)] = banks.list_banks(session)
        reasons = list(session.scalars(sa.select(AuditEntry.detail).where(AuditEntry.event.like("bank.%"))))
    assert (bank.enabled_ratio, count) == (0.5, 0)
    assert {d.get("reason") for d in reasons} >= {"ThreatExchange 共享", "灰度一半", "误收"}


STRICT = 'name: strict\nversion: "1"\ndefault: block\nrules: []\n'


def test_leads_read_the_policy_in_force_and_preview_a_candidate(
    client: TestClient, runtime: Runtime, mine: object
) -> None:
    """The rules in force, and a candidate replayed over the last days' verdicts before it ships."""
    login(client)
    assert client.get("/review/admin/policy").status_code == 403
    senior = TestClient(client.app, follow_redirects=False)
    login(senior, "sam")
    page = senior.get("/review/admin/policy").text
    assert "default@3" in page and "high.targeted-or-sexual" in page
    token = csrf_of(senior, "/review/admin/policy")
    files = {"file": ("strict.yaml", STRICT.encode(), "application/yaml")}
    preview = senior.post("/review/admin/policy", data={"csrf": token, "days": "7"}, files=files).text
    report = preview.split('id="report"')[1]
    assert "strict@1：1 条判定中 1 条处置会改变" in report and f"/review/item/{mine}" in report
    broken = {"file": ("bad.yaml", b"name: x\n", "application/yaml")}
    refused = senior.post("/review/admin/policy", data={"csrf": token}, files=broken)
    assert refused.status_code == 400 and "策略文件无效" in refused.text
