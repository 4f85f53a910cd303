"""template_versions.link_variables: the variables that start a link, stored at save

Versions saved before this revision get theirs computed here, with the same renderer the
service uses on save, so the gateway can check every version's links without rendering.

Revision ID: ts_0002
Revises: ts_0001
Create Date: 2026-12-02
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.rendering import TemplateSyntaxInvalid, channel_fields

revision: str = "ts_0002"
down_revision: str | None = "ts_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "template_service"

_ROWS = sa.text(
    f"""
    SELECT v.id, t.channel, v.subject, v.text_body, v.html_body, v.title, v.body, v.data,
           v.image_url
      FROM {SCHEMA}.template_versions v JOIN {SCHEMA}.templates t ON t.id = v.template_id
    """
)
_SET = sa.text(
    f"UPDATE {SCHEMA}.template_versions SET link_variables = CAST(:links AS jsonb) WHERE id = :id"
)


def upgrade() -> None:
    op.add_column(
        "template_versions",
        sa.Column(
            "link_variables", postgresql.JSONB, nullable=False, server_default=sa.text("'[]'")
        ),
        schema=SCHEMA,
    )
    bind = op.get_bind()
    for row in bind.execute(_ROWS).mappings().all():
        try:
            links = sorted(channel_fields(row["channel"], dict(row)).link_variables())
        except TemplateSyntaxInvalid:
            continue  # compiled when it was saved; a renderer change cannot have broken it
        if links:
            bind.execute(_SET, {"id": row["id"], "links": json.dumps(links)})


def downgrade() -> None:
    op.drop_column("template_versions", "link_variables", schema=SCHEMA)
