"""Review console accounts at the storage edge: add, list, disable, authenticate.

Passwords are hashed with argon2id (argon2-cffi's defaults, rehashed on login when the parameters move on).
Authentication answers the same way, and takes about as long, for an unknown user, a disabled one and a
wrong password, so the login form does not reveal which accounts exist. Every change is audited.
After ``LOCK_AFTER`` consecutive wrong passwords an account is locked (``LOCK_FOR``, doubling with every
further failure, capped at a day) — online guessing gets a handful of tries per hour, not thousands; the
lock answers like a wrong password and is audited.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from jobs import store
from memeguard.db import Role, User, utcnow
from memeguard.schemas import TRIAL_TENANT
from memeguard.settings import is_placeholder

MIN_PASSWORD = 12
LOCK_AFTER = 5
LOCK_FOR = timedelta(minutes=15)
LOCK_MAX = timedelta(days=1)
USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified for unknown users, so a login costs the same whether the user exists or not. Hashed on the
    first login, not at import (an argon2 hash is tens of milliseconds every process would pay at start)."""
    return _HASHER.hash("memeguard-dummy-password")


class UserError(ValueError):
    """An account change refused, with the reason."""


@dataclass(frozen=True)
class UserRecord:
    id: int
    username: str
    role: Role
    tenants: tuple[str, ...]
    disabled: bool
    last_login_at: datetime | None
    locked_until: datetime | None = None  # too many wrong passwords: refused until then (``unlock_user``)
    shield_images: bool = True  # harmful images open blurred (``review.wellness.set_preferences``)
    auto_next: bool = False  # after a decision the console opens the queue's next item

    def state(self, now: datetime | None = None) -> str:
        """disabled, locked (until a time) or active — what ``users list`` and the admin pages show."""
        if self.disabled:
            return "disabled"
        if self.locked_until is not None and self.locked_until > (now or utcnow()):
            return f"locked until {self.locked_until:%Y-%m-%d %H:%M} UTC"
        return "active"


def add_user(
    session: Session, username: str, password: str, role: Role, tenants: list[str], *, actor: str
) -> UserRecord:
    """A reviewer sees only the tenants assigned; an admin with no tenants listed sees none (be explicit)."""
    if not USERNAME.match(username):
        raise UserError(f"username {username!r}: 2-64 lower-case letters, digits, '_', '.', '-'")
    if len(password) < MIN_PASSWORD or is_placeholder(password):
        raise UserError(f"password must be at least {MIN_PASSWORD} characters and not a placeholder")
    if session.scalar(sa.select(User.id).where(User.username == username)) is not None:
        raise UserError(f"user {username!r} already exists")
    if TRIAL_TENANT in tenants:  # the try-it page's items never reach a review queue
        raise UserError(f"tenant {TRIAL_TENANT!r} is reserved for the console's try-it page")
    row = User(
        username=username, password_hash=_HASHER.hash(password), role=role, tenants=sorted(set(tenants)), disabled=False
    )
    session.add(row)
    session.flush()
    store.audit(
        session, "user.added", actor=actor, detail={"user": username, "role": role.value, "tenants": row.tenants}
    )
    return record(row)


def disable_user(session: Session, username: str, *, actor: str) -> UserRecord:
    row = _row(session, username)
    row.disabled = True
    session.flush()
    store.audit(session, "user.disabled", actor=actor, detail={"user": username})
    return record(row)


def unlock_user(session: Session, username: str, *, actor: str) -> UserRecord:
    """Lift a lock from wrong passwords (the person proved who they are another way); audited."""
    row = _row(session, username)
    before = row.locked_until
    row.failed_logins, row.locked_until = 0, None
    session.flush()
    detail = {"user": username, "was_locked_until": before.isoformat() if before else None}
    store.audit(session, "user.unlocked", actor=actor, detail=detail)
    return record(row)


def end_sessions(session: Session, username: str, *, actor: str) -> None:
    """Revoke every console session of this account issued until now (logout; a leaked cookie)."""
    _row(session, username).sessions_valid_after = utcnow()
    session.flush()
    store.audit(session, "user.sessions_ended", actor=actor, detail={"user": username})


def list_users(session: Session) -> list[UserRecord]:
    return [record(u) for u in session.scalars(sa.select(User).order_by(User.username))]


def authenticate(session: Session, username: str, password: str, now: datetime | None = None) -> UserRecord | None:
    """The user if the password is right and the account enabled and not locked, else None (whatever the
    reason). The hash is verified in every case, so all refusals cost the same."""
    now = now or utcnow()
    row = session.scalar(sa.select(User).where(User.username == username))
    try:
        _HASHER.verify(row.password_hash if row is not None else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        if row is not None:
            _failed(session, row, now)
        return None
    if row is None or row.disabled or (row.locked_until is not None and row.locked_until > now):
        return None
    if _HASHER.check_needs_rehash(row.password_hash):
        row.password_hash = _HASHER.hash(password)
    row.last_login_at, row.failed_logins, row.locked_until = now, 0, None
    session.flush()
    return record(row)


def _failed(session: Session, row: User, now: datetime) -> None:
    """Count a wrong password; from the LOCK_AFTER-th on, lock the account (longer each time)."""
    row.failed_logins = (row.failed_logins or 0) + 1
    beyond = row.failed_logins - LOCK_AFTER
    if beyond >= 0:
        row.locked_until = now + min(LOCK_MAX, LOCK_FOR * 2 ** min(beyond, 10))
        store.audit(
            session,
            "user.locked",
            actor="console",
            detail={"user": row.username, "failed_logins": row.failed_logins, "until": row.locked_until.isoformat()},
        )
    session.flush()


def _row(session: Session, username: str) -> User:
    row = session.scalar(sa.select(User).where(User.username == username))
    if row is None:
        raise UserError(f"no user named {username!r}")
    return row


def record(row: User) -> UserRecord:
    """A users row as a plain record (the console's session lookup uses it too)."""
    return UserRecord(
        row.id,
        row.username,
        row.role,
        tuple(row.tenants),
        row.disabled,
        row.last_login_at,
        row.locked_until,
        row.shield_images is not False,
        row.auto_next is True,
    )


def update_user(session: Session, username: str, *, role: Role, tenants: list[str], actor: str) -> UserRecord:
    """Change an account's role and tenants (before and after audited); the reserved trial tenant refused."""
    if TRIAL_TENANT in tenants:
        raise UserError(f"tenant {TRIAL_TENANT!r} is reserved for the console's try-it page")
    row = _row(session, username)
    before = {"role": row.role.value, "tenants": list(row.tenants)}
    row.role, row.tenants = role, sorted({t.strip() for t in tenants if t.strip()})
    session.flush()
    after = {"role": role.value, "tenants": row.tenants}
    store.audit(session, "user.updated", actor=actor, detail={"user": username, "before": before, "after": after})
    return record(row)
