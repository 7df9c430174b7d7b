"""hash values by type: banks.distances, bank_hashes.signals and job_fingerprints.signals (JSON)

PDQ and pHash were parallel columns; every hash type now lives under its name (``banks.signals``'s
registry), so a new type (vPDQ, this revision's reason) needs no column of its own. Existing values move
over in SQL, on the database, so a large fingerprint table is not read into Python.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _object(pairs: dict[str, str]) -> str:
    """A JSON object of column values, keys with NULL values left out, in this database's dialect."""
    if op.get_bind().dialect.name == "postgresql":
        args = ", ".join(f"'{k}', {v}" for k, v in pairs.items())
        return f"json_strip_nulls(json_build_object({args}))"
    args = ", ".join(f"'{k}', {v}" for k, v in pairs.items())
    return f"json_patch('{{}}', json_object({args}))"  # a merge patch drops the null members


def _field(column: str, key: str, cast: str = "") -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"({column}->>'{key}'){cast and '::' + cast}"
    return f"json_extract({column}, '$.{key}')"


def _allow_time() -> None:
    """On PostgreSQL, the job fingerprints' UPDATE may outlast env.py's 60 s statement timeout on a large
    table; the lock timeout (fail fast behind live traffic) still holds."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL statement_timeout = '30min'")


def upgrade() -> None:
    _allow_time()
    op.add_column("banks", sa.Column("distances", sa.JSON(), nullable=True))
    op.execute(f"UPDATE banks SET distances = {_object({'pdq': 'pdq_distance', 'phash': 'phash_distance'})}")
    with op.batch_alter_table("banks") as batch:
        batch.alter_column("distances", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("pdq_distance")
        batch.drop_column("phash_distance")
    for table, quality_nullable in (("bank_hashes", True), ("job_fingerprints", False)):
        op.add_column(table, sa.Column("signals", sa.JSON(), nullable=True))
        op.add_column(table, sa.Column("quality", sa.Integer(), nullable=True))
        op.execute(f"UPDATE {table} SET signals = {_object({'pdq': 'pdq', 'phash': 'phash'})}, quality = pdq_quality")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("signals", existing_type=sa.JSON(), nullable=False)
            batch.alter_column("quality", existing_type=sa.Integer(), nullable=quality_nullable)
            batch.drop_column("pdq")
            batch.drop_column("pdq_quality")
            batch.drop_column("phash")


def downgrade() -> None:
    """Back to the two columns: PDQ and pHash values return; other types' values (vPDQ) are dropped, and
    a bank entry that had only those keeps no hash (the old matcher skips it)."""
    _allow_time()
    for table, nullable in (("bank_hashes", True), ("job_fingerprints", False)):
        op.add_column(table, sa.Column("pdq", sa.String(64), nullable=True))
        op.add_column(table, sa.Column("pdq_quality", sa.Integer(), nullable=True))
        op.add_column(table, sa.Column("phash", sa.String(16), nullable=True))
        op.execute(
            f"UPDATE {table} SET pdq = {_field('signals', 'pdq')}, phash = {_field('signals', 'phash')}, "
            "pdq_quality = quality"
        )
        with op.batch_alter_table(table) as batch:
            for column, kind in (("pdq", sa.String(64)), ("pdq_quality", sa.Integer()), ("phash", sa.String(16))):
                batch.alter_column(column, existing_type=kind, nullable=nullable)
            batch.drop_column("signals")
            batch.drop_column("quality")
    op.add_column("banks", sa.Column("pdq_distance", sa.Integer(), nullable=True))
    op.add_column("banks", sa.Column("phash_distance", sa.Integer(), nullable=True))
    op.execute(
        f"UPDATE banks SET pdq_distance = COALESCE({_field('distances', 'pdq', 'integer')}, 31), "
        f"phash_distance = COALESCE({_field('distances', 'phash', 'integer')}, 8)"
    )
    with op.batch_alter_table("banks") as batch:
        batch.alter_column("pdq_distance", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("phash_distance", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("distances")
