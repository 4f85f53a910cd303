"""collapse windows

Revision ID: gw_0006
Revises: gw_0005
Create Date: 2026-12-08

`collapse_windows`: for a send with a `collapse_key`, the notification that opened the window
for (API key, user, channel, key) and when the window ends. A later send with the same key
within the window is accepted as `skipped`/`collapsed` instead of sent; the row is the lock that
makes two concurrent sends decide one after the other, across every gateway and restart.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "gw_0006"
down_revision: str | None = "gw_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "api_gateway"


def upgrade() -> None:
    op.create_table(
        "collapse_windows",
        sa.Column("api_key_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("collapse_key", sa.String(128), nullable=False),
        sa.Column("notification_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("window_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "api_key_id", "user_id", "channel", "collapse_key", name="pk_collapse_windows"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_collapse_windows_window_ends_at", "collapse_windows", ["window_ends_at"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_table("collapse_windows", schema=SCHEMA)
