"""templates, their locales (active version) and immutable versions

Revision ID: ts_0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "ts_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "template_service"


def upgrade() -> None:
    op.create_table(
        "templates",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("code", "channel", name="uq_templates_code_channel"),
        schema=SCHEMA,
    )
    op.create_table(
        "template_locales",
        sa.Column(
            "template_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.templates.id"),
            primary_key=True,
        ),
        sa.Column("locale", sa.String(35), primary_key=True),
        sa.Column("active_version", sa.Integer, nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "template_versions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "template_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.templates.id"),
            nullable=False,
        ),
        sa.Column("locale", sa.String(35), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("text_body", sa.Text, nullable=True),
        sa.Column("html_body", sa.Text, nullable=True),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("body", sa.Text, nullable=True),
        sa.Column("data", postgresql.JSONB, nullable=True),
        sa.Column("image_url", sa.Text, nullable=True),
        sa.Column("variables", postgresql.JSONB, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint("template_id", "locale", "version", name="uq_template_versions_number"),
        schema=SCHEMA,
    )
    op.create_index("ix_templates_channel_code", "templates", ["channel", "code"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("ix_templates_channel_code", table_name="templates", schema=SCHEMA)
    op.drop_table("template_versions", schema=SCHEMA)
    op.drop_table("template_locales", schema=SCHEMA)
    op.drop_table("templates", schema=SCHEMA)
