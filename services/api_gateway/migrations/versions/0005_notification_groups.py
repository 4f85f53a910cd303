"""notification groups

Revision ID: gw_0005
Revises: gw_0004
Create Date: 2026-12-08

`notification_statuses.group_id`: the notifications one send made for several channels
(`channels: ["push", "email"]`), read together by `GET /v1/notifications/groups/{group_id}`.
Null for a single-channel send, so the index holds only grouped rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "gw_0005"
down_revision: str | None = "gw_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "api_gateway"


def upgrade() -> None:
    op.add_column(
        "notification_statuses",
        sa.Column("group_id", postgresql.UUID(as_uuid=True), nullable=True),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_notification_statuses_group",
        "notification_statuses",
        ["api_key_id", "group_id"],
        schema=SCHEMA,
        postgresql_where=sa.text("group_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_notification_statuses_group", "notification_statuses", schema=SCHEMA)
    op.drop_column("notification_statuses", "group_id", schema=SCHEMA)
