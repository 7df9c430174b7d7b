"""users.shield_images (harmful images open blurred), users.auto_next (the next item opens after a decision)
and review_exposures (images opened per reviewer and day)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("shield_images", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("users", sa.Column("auto_next", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "review_exposures",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("harmful", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("review_exposures")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("shield_images")
        batch.drop_column("auto_next")
