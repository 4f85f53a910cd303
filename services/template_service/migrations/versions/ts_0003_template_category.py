"""templates.category: `transactional` or e.g. `marketing`

Every template saved before this revision is transactional, which is what the system treated
all of them as (no unsubscribe link, no per-category opt-out).

Revision ID: ts_0003
Revises: ts_0002
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ts_0003"
down_revision: str | None = "ts_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "template_service"


def upgrade() -> None:
    op.add_column(
        "templates",
        sa.Column(
            "category", sa.String(32), nullable=False, server_default=sa.text("'transactional'")
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("templates", "category", schema=SCHEMA)
