"""exclusive claims: a claim token and lease, per-attempt claim counts, retry due times,
expiry, the accepted message kept for the reconciler, and an index of unfinished rows

Revision ID: gw_0003
Revises: gw_0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "gw_0003"
down_revision: str | None = "gw_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "api_gateway"
TABLE = "notification_statuses"
OPEN = "status IN ('queued', 'scheduled', 'processing', 'retrying')"


def upgrade() -> None:
    columns = [
        sa.Column("claim_token", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt_claims", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=True),
    ]
    for column in columns:
        op.add_column(TABLE, column, schema=SCHEMA)
    op.create_index(
        "ix_notification_statuses_open",
        TABLE,
        ["updated_at"],
        schema=SCHEMA,
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("ix_notification_statuses_open", TABLE, schema=SCHEMA)
    for name in (
        "payload",
        "expires_at",
        "next_attempt_at",
        "attempt_claims",
        "lease_until",
        "claim_token",
    ):
        op.drop_column(TABLE, name, schema=SCHEMA)
