"""verdicts carry the emotion's and the intent's own confidence (None where the analyzer states none)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("emotion_confidence", sa.Float(), nullable=True))
        batch.add_column(sa.Column("intent_confidence", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("intent_confidence")
        batch.drop_column("emotion_confidence")
