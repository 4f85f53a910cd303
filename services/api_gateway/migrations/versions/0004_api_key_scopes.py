"""api key scopes

Revision ID: gw_0004
Revises: gw_0003
Create Date: 2026-11-30

`api_keys.scopes`: what a key may do. Every existing key keeps sending (`{send}`); the operator
API (`/v1/admin/...`) needs `admin`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "gw_0004"
down_revision: str | None = "gw_0003"
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


def downgrade() -> None:
    op.drop_column("api_keys", "scopes", schema=SCHEMA)
