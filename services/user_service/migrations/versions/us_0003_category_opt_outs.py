"""preferences.categories: per-category switches by channel (the unsubscribe links')

A JSON object such as `{"marketing": {"email": false}}`; empty (everything on) for every user
saved before this revision.

Revision ID: us_0003
Revises: us_0002
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "us_0003"
down_revision: str | None = "us_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "user_service"


def upgrade() -> None:
    op.add_column(
        "preferences",
        sa.Column(
            "categories", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("preferences", "categories", schema=SCHEMA)
