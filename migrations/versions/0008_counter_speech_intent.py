"""verdicts may carry the intent counter_speech (text that reports or argues against discrimination)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INTENT = (
    "humor",
    "sarcasm",
    "implicit_attack",
    "explicit_attack",
    "provocation",
    "complaint",
    "venting",
    "praise",
    "highlight",
    "greeting",
    "neutral",
)
WITH_COUNTER_SPEECH = (*INTENT, "counter_speech")


def _allow(values: tuple[str, ...]) -> None:
    """Replace the CHECK constraint the non-native ``intent`` enum column carries (named ``intent``)."""
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_constraint("intent", type_="check")
        batch.create_check_constraint("intent", sa.column("intent").in_(values))


def upgrade() -> None:
    _allow(WITH_COUNTER_SPEECH)


def downgrade() -> None:
    op.execute(sa.text("UPDATE verdicts SET intent = 'neutral' WHERE intent = 'counter_speech'"))
    _allow(INTENT)
