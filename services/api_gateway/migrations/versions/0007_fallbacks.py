"""fallbacks

Revision ID: gw_0007
Revises: gw_0006
Create Date: 2026-12-08

A push send with `fallback: {"channel": "email", "after_seconds": N}` makes a second status row
at acceptance: the email, `scheduled` until the push's deadline, `fallback_of` the push (which
points back with `fell_back_to`). The relay releases it only if the push has not been
delivered; the index finds the fallbacks still waiting, so a push that ended undelivered
releases its fallback early.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "gw_0007"
down_revision: str | None = "gw_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "api_gateway"


def upgrade() -> None:
    for name in ("fallback_of", "fell_back_to"):
        op.add_column(
            "notification_statuses",
            sa.Column(name, postgresql.UUID(as_uuid=True), nullable=True),
            schema=SCHEMA,
        )
    op.create_index(
        "ix_notification_statuses_waiting_fallback",
        "notification_statuses",
        ["fallback_of"],
        schema=SCHEMA,
        postgresql_where=sa.text("fallback_of IS NOT NULL AND status = 'scheduled'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_notification_statuses_waiting_fallback", "notification_statuses", schema=SCHEMA
    )
    op.drop_column("notification_statuses", "fell_back_to", schema=SCHEMA)
    op.drop_column("notification_statuses", "fallback_of", schema=SCHEMA)
