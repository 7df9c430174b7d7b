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
