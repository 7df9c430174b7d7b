"""Review console accounts on real PostgreSQL: argon2id hashes, uniform refusals, audited changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from memeguard.db import AuditEntry, Role, User, utcnow
from review import users
from review.users import UserError

PASSWORD = "correct horse battery"


def test_add_authenticate_disable(pg_session: Session) -> None:
    added = users.add_user(pg_session, "ann", PASSWORD, Role.REVIEWER, ["tenant-b", "tenant-a"], actor="admin")
    assert added.tenants == ("tenant-a", "tenant-b") and added.role is Role.REVIEWER
    stored = pg_session.scalars(sa.select(User.password_hash)).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert users.authenticate(pg_session, "ann", PASSWORD).last_login_at is not None  # type: ignore[union-attr]
    users.disable_user(pg_session, "ann", actor="admin")
    assert users.authenticate(pg_session, "ann", PASSWORD) is None
    events = list(
        pg_session.scalars(sa.select(AuditEntry.event).where(AuditEntry.event.like("user.%")).order_by(AuditEntry.id))
    )
    assert events == ["user.added", "user.disabled"]


@pytest.mark.parametrize(("username", "password"), [("ann", "wrong password!!"), ("nobody", PASSWORD)])
def test_wrong_password_and_unknown_user_look_the_same(pg_session: Session, username: str, password: str) -> None:
    users.add_user(pg_session, "ann", PASSWORD, Role.SENIOR, ["t"], actor="admin")
    assert users.authenticate(pg_session, username, password) is None


@pytest.mark.parametrize(
    ("username", "password", "reason"),
    [
        ("Ann Smith", PASSWORD, "lower-case"),
        ("bob", "short", "at least 12"),
        ("ann", PASSWORD, "already exists"),
    ],
)
def test_refusals_name_the_reason(pg_session: Session, username: str, password: str, reason: str) -> None:
    users.add_user(pg_session, "ann", PASSWORD, Role.ADMIN, [], actor="admin")
    with pytest.raises(UserError, match=reason):
        users.add_user(pg_session, username, password, Role.REVIEWER, [], actor="admin")


def test_repeated_wrong_passwords_lock_the_account_for_a_while(pg_session: Session) -> None:
    users.add_user(pg_session, "locky", "correct horse battery", Role.REVIEWER, ["t"], actor="admin")
    now = utcnow()
    for _ in range(users.LOCK_AFTER):
        assert users.authenticate(pg_session, "locky", "wrong password!!", now) is None
    assert users.authenticate(pg_session, "locky", "correct horse battery", now) is None  # locked
    later = now + users.LOCK_FOR + timedelta(seconds=1)
    assert users.authenticate(pg_session, "locky", "correct horse battery", later) is not None  # lock expired
    for _ in range(users.LOCK_AFTER - 1):  # the counter was reset by the success
        users.authenticate(pg_session, "locky", "wrong password!!", later)
    assert users.authenticate(pg_session, "locky", "correct horse battery", later) is not None
    events = pg_session.scalars(sa.select(AuditEntry.event).where(AuditEntry.detail["user"].as_string() == "locky"))
    assert list(events).count("user.locked") == 1


def test_a_locked_account_shows_as_locked_and_an_admin_can_unlock_it(pg_session: Session) -> None:
    users.add_user(pg_session, "locky", "correct horse battery", Role.REVIEWER, ["t"], actor="admin")
    now = utcnow()
    for _ in range(users.LOCK_AFTER):
        users.authenticate(pg_session, "locky", "wrong password!!", now)
    [listed] = users.list_users(pg_session)
    assert listed.state(now).startswith("locked until ")  # not "active"
    assert users.unlock_user(pg_session, "locky", actor="cli:admin").state(now) == "active"
    assert users.authenticate(pg_session, "locky", "correct horse battery", now) is not None
    events = pg_session.scalars(sa.select(AuditEntry.event).where(AuditEntry.detail["user"].as_string() == "locky"))
    assert "user.unlocked" in list(events)
