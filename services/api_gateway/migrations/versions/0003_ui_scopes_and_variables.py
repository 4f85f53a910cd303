"""api key scopes, and the variables of each notification for the console

Revision ID: gw_ui1
Revises: gw_0002
Create Date: 2026-11-30

`api_keys.scopes`: what a key may do. Every existing key keeps sending (`{send}`); the operator
API (`/v1/admin/...`) needs `admin`.
`notification_statuses.variables`: the variables the notification was accepted with, so the
console can show its rendered content after the outbox row is gone.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "gw_ui1"
down_revision: str | None = "gw_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "api_gateway"


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column(
            "scopes",
            postgresql.ARRAY(sa.Text),
            nullable=False,
            server_default=sa.text("'{send}'::text[]"),
        ),
        schema=SCHEMA,
    )
    op.add_column(
        "notification_statuses",
        sa.Column("variables", postgresql.JSONB, nullable=True),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("notification_statuses", "variables", schema=SCHEMA)
    op.drop_column("api_keys", "scopes", schema=SCHEMA)
