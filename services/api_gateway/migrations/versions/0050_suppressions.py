"""email suppression list

Revision ID: gw_0050
Revises: gw_0008
Create Date: 2026-12-08

`suppressions`: addresses no email is sent to any more (a hard bounce, a complaint, or an
operator's decision). Keyed by the lower-cased address; the workers look addresses up before
every send, the gateway's operator API lists, adds and removes them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "gw_0050"
down_revision: str | None = "gw_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "api_gateway"


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("address", sa.Text, primary_key=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("notification_id", sa.Uuid, nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("address = lower(address)", name="ck_suppressions_lower"),
        sa.CheckConstraint(
            "reason IN ('hard_bounce', 'complaint', 'manual')", name="ck_suppressions_reason"
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_suppressions_created_at", "suppressions", ["created_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("suppressions", schema=SCHEMA)
