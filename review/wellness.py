"""Protecting reviewers (T&S wellness practice): harmful images open blurred and greyscaled unless a reviewer
turns that off, a reviewer can step away from a queue (their claims go back), and leads see how many images,
and how many harmful ones, each reviewer opened per day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobs import store
from memeguard.db import Exposure, ReviewClaim, User, utcnow
from review.users import UserRecord


@dataclass(frozen=True)
class ExposureDay:
    username: str
    day: date
    images: int
    harmful: int


def record_exposure(session: Session, username: str, harmful: bool, now: datetime | None = None) -> None:
    """Count one image opened (and whether it was harmful) on today's row of this reviewer."""
    day = (now or utcnow()).date()
    bump = {"images": Exposure.images + 1, "harmful": Exposure.harmful + int(harmful)}
    where = sa.update(Exposure).where(Exposure.username == username, Exposure.day == day)
    if getattr(session.execute(where.values(**bump)), "rowcount", 0):
        return
    try:
        with session.begin_nested():
            session.add(Exposure(username=username, day=day, images=1, harmful=int(harmful)))
    except IntegrityError:  # the first image of the day, opened twice at once: count on the row that won
        session.execute(where.values(**bump))


def exposures(session: Session, days: int = 14, now: datetime | None = None) -> list[ExposureDay]:
    """Every reviewer's counts of the last ``days`` days, most recent day first, most exposed first."""
    since = (now or utcnow()).date() - timedelta(days=days - 1)
    query = (
        sa.select(Exposure)
        .where(Exposure.day >= since)
        .order_by(Exposure.day.desc(), Exposure.harmful.desc(), Exposure.username)
    )
    return [ExposureDay(e.username, e.day, e.images, e.harmful) for e in session.scalars(query)]


def set_preferences(session: Session, user: UserRecord, *, shield_images: bool, auto_next: bool) -> None:
    """The reviewer's own choices: harmful images blurred until revealed (on by default) or shown as is, and
    whether the queue's next item opens by itself after a decision (off by default)."""
    chosen = {"shield_images": shield_images, "auto_next": auto_next}
    session.execute(sa.update(User).where(User.id == user.id).values(**chosen))
    store.audit(session, "user.preferences", actor=f"reviewer:{user.username}", detail=chosen)


def take_break(session: Session, user: UserRecord, queue: str) -> int:
    """Step away from a queue: the reviewer's claims go back to the queue for others. Returns how many."""
    released = session.execute(sa.delete(ReviewClaim).where(ReviewClaim.username == user.username))
    count = int(getattr(released, "rowcount", 0) or 0)
    store.audit(session, "review.break", actor=f"reviewer:{user.username}", detail={"queue": queue, "released": count})
    return count
