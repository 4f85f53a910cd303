"""notification status, its history and per-device push results

Revision ID: gw_0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "gw_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "api_gateway"


def upgrade() -> None:
    op.create_table(
        "notification_statuses",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("api_key_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("notification_type", sa.String(16), nullable=False),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("template_code", sa.String(128), nullable=False),
        sa.Column("template_version", sa.Integer, nullable=True),
        sa.Column("locale", sa.String(35), nullable=True),
        sa.Column("priority", sa.Integer, nullable=False, server_default="5"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("provider_message_id", sa.Text, nullable=True),
        sa.Column(
            "metadata", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_notification_statuses_request_id",
        "notification_statuses",
        ["api_key_id", "request_id"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_notification_statuses_user_created",
        "notification_statuses",
        ["user_id", "created_at"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_notification_statuses_created", "notification_statuses", ["created_at"], schema=SCHEMA
    )
    op.create_table(
        "notification_status_history",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("notification_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint(
            "notification_id", "status", "attempt", "generation", name="uq_history_once"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_history_notification",
        "notification_status_history",
        ["notification_id", "at"],
        schema=SCHEMA,
    )
    op.create_table(
        "notification_device_results",
        sa.Column("notification_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("device_token", sa.Text, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider_message_id", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("notification_device_results", schema=SCHEMA)
    op.drop_table("notification_status_history", schema=SCHEMA)
    op.drop_table("notification_statuses", schema=SCHEMA)
