"""Hash banks in PostgreSQL: every change audited, CSV in ThreatExchange's PDQ format, clear refusals."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from banks import store as banks
from banks.store import BankError, NewHash
from memeguard.db import AuditEntry, BankKind

PDQ_A, PDQ_B = "f" * 64, "0f" * 32


def events(session: Session) -> list[str]:
    return list(
        session.scalars(sa.select(AuditEntry.event).where(AuditEntry.event.like("bank.%")).order_by(AuditEntry.id))
    )


def test_create_configure_add_remove_are_audited(pg_session: Session) -> None:
    bank = banks.create_bank(pg_session, "doge-template", BankKind.TEMPLATE, "狗头", actor="alice")
    assert bank.distances == {"pdq": 31, "phash": 8, "vpdq": 31}  # every registered type, at its default
    assert (bank.enabled, bank.enabled_ratio) == (True, 1.0)
    new = NewHash({"pdq": PDQ_A, "phash": "0" * 16}, 90, "original")
    ids = banks.add_hashes(pg_session, "doge-template", [new], actor="alice", source="cli")
    updated = banks.configure_bank(pg_session, "doge-template", actor="bob", enabled_ratio=0.25, distances={"pdq": 20})
    assert (updated.enabled_ratio, updated.distances) == (0.25, {"pdq": 20, "phash": 8, "vpdq": 31})
    assert banks.remove_hashes(pg_session, "doge-template", ids, actor="bob") == 1
    assert banks.remove_hashes(pg_session, "doge-template", ids, actor="bob") == 0  # already removed
    assert events(pg_session) == [
        "bank.created",
        "bank.hashes_added",
        "bank.configured",
        "bank.hashes_removed",
        "bank.hashes_removed",
    ]
    detail = pg_session.scalars(sa.select(AuditEntry.detail).where(AuditEntry.event == "bank.configured")).one()
    assert detail["before"] == {"enabled_ratio": 1.0, "distances": {"pdq": 31, "phash": 8, "vpdq": 31}}
    assert detail["after"]["distances"]["pdq"] == 20
    assert [(b.name, n) for b, n in banks.list_banks(pg_session)] == [("doge-template", 0)]


def test_csv_round_trip_in_threatexchange_pdq_format(pg_session: Session) -> None:
    banks.create_bank(pg_session, "harmful", BankKind.HARMFUL, "general_offense", actor="alice")
    text = f"hash,quality,note\n{PDQ_A},100,first\n# a comment\n{PDQ_B},75,\n"
    assert len(banks.import_csv(pg_session, "harmful", text, actor="alice", source="upload.csv")) == 2
    assert banks.export_csv(pg_session, "harmful") == f"{PDQ_A},100,first\n{PDQ_B},75,\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("abc,90\n", "line 1: PDQ value 'abc' is not 64 lower-case hex digits"),
        (f"{PDQ_A},high\n", "line 1: quality 'high' is not an integer"),
        (f"{PDQ_A},90\n{PDQ_B},101\n", "line 2: PDQ quality 101 is outside 0..100"),
    ],
)
def test_a_bad_csv_line_fails_the_import_with_its_number(pg_session: Session, text: str, reason: str) -> None:
    banks.create_bank(pg_session, "b1", BankKind.HARMFUL, actor="alice")
    with pytest.raises(BankError, match=reason):
        banks.import_csv(pg_session, "b1", text, actor="alice", source="x.csv")
    assert banks.list_banks(pg_session)[0][1] == 0  # nothing half-imported


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda s: banks.create_bank(s, "Bad Name", BankKind.TEMPLATE, actor="a"), "lower-case"),
        (
            lambda s: banks.create_bank(s, "x", BankKind.TEMPLATE, actor="a", distances={"pdq": 200}),
            "PDQ match distance 200 is outside 0..64",
        ),
        (lambda s: banks.create_bank(s, "y", BankKind.TEMPLATE, actor="a", distances={"md5": 1}), "unknown hash type"),
        (lambda s: banks.add_hashes(s, "t", [NewHash({})], actor="a", source=""), "a value of at least one type"),
        (lambda s: banks.add_hashes(s, "t", [NewHash({"vpdq": PDQ_A})], actor="a", source=""), "vPDQ value"),
        (lambda s: banks.add_hashes(s, "missing", [], actor="a", source=""), "no bank named 'missing'"),
        (lambda s: banks.configure_bank(s, "t", actor="a", enabled_ratio=1.5), "between 0 and 1"),
        (lambda s: banks.configure_bank(s, "t", actor="a", colour="red"), "unknown bank settings"),
        (lambda s: banks.create_bank(s, "t", BankKind.TEMPLATE, actor="a"), "already exists"),
    ],
)
def test_refusals_name_the_reason(pg_session: Session, call, reason: str) -> None:  # type: ignore[no-untyped-def]
    banks.create_bank(pg_session, "t", BankKind.TEMPLATE, actor="a")
    with pytest.raises(BankError, match=reason):
        call(pg_session)
