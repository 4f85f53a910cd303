"""topics and broadcasts

Revision ID: gw_0008
Revises: gw_0007
Create Date: 2026-12-08

`topics` and their `topic_subscribers` (per API key); `broadcasts`, one per topic send, with
the fan-out's cursor so it goes in chunks, survives restarts and is shared by the gateways
(a lease); `notification_statuses.broadcast_id` links each notification to its broadcast.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "gw_0008"
down_revision: str | None = "gw_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "api_gateway"
UUID = postgresql.UUID(as_uuid=True)


def _at(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "topics",
        sa.Column("api_key_id", UUID, nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        _at("created_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("api_key_id", "key", name="pk_topics"),
        schema=SCHEMA,
    )
    op.create_table(
        "topic_subscribers",
        sa.Column("api_key_id", UUID, nullable=False),
        sa.Column("topic_key", sa.String(128), nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        _at("created_at"),
        sa.PrimaryKeyConstraint("api_key_id", "topic_key", "user_id", name="pk_topic_subscribers"),
        schema=SCHEMA,
    )
    op.create_table(
        "broadcasts",
        sa.Column("id", UUID, nullable=False),
        sa.Column("api_key_id", UUID, nullable=False),
        sa.Column("topic_key", sa.String(128), nullable=False),
        sa.Column("request", postgresql.JSONB, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("fanned_out", sa.Integer, nullable=False, server_default="0"),
        sa.Column("not_sent", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cursor", UUID, nullable=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="fanning_out"),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        _at("created_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_broadcasts"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_broadcasts_fanning_out",
        "broadcasts",
        ["created_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("state = 'fanning_out'"),
    )
    op.add_column("notification_statuses", sa.Column("broadcast_id", UUID), schema=SCHEMA)
    op.create_index(
        "ix_notification_statuses_broadcast",
        "notification_statuses",
        ["broadcast_id"],
        schema=SCHEMA,
        postgresql_where=sa.text("broadcast_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_notification_statuses_broadcast", "notification_statuses", schema=SCHEMA)
    op.drop_column("notification_statuses", "broadcast_id", schema=SCHEMA)
    op.drop_table("broadcasts", schema=SCHEMA)
    op.drop_table("topic_subscribers", schema=SCHEMA)
    op.drop_table("topics", schema=SCHEMA)
