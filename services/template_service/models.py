"""The template service's tables (PostgreSQL schema `template_service`).

A template is a (code, channel) with a name and a category; each of its locales has numbered, immutable
versions and one active version (`template_locales.active_version`). Version numbers are unique
per (template, locale) by constraint, and new ones are taken under a row lock on the template,
so two concurrent saves can never produce the same number.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import declarative_base_for

SCHEMA = "template_service"

Base = declarative_base_for(SCHEMA)


class Template(Base):
    __tablename__ = "templates"
    __table_args__ = (
        UniqueConstraint("code", "channel", name="uq_templates_code_channel"),
        Index("ix_templates_channel_code", "channel", "code"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(String(64), nullable=False)
    channel: Mapped[str] = mapped_column(String(8), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    # `transactional` or e.g. `marketing` (`shared.contracts.Category`): every version of the
    # template carries it; only non-transactional mail gets an unsubscribe link.
    category: Mapped[str] = mapped_column(
        String(32), nullable=False, server_default="transactional"
    )
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # Soft delete: the template disappears from the API, its versions keep rendering for
    # notifications that pinned them.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TemplateLocale(Base):
    __tablename__ = "template_locales"

    template_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.templates.id"), primary_key=True
    )
    locale: Mapped[str] = mapped_column(String(35), primary_key=True)
    active_version: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class TemplateVersion(Base):
    __tablename__ = "template_versions"
    __table_args__ = (
        UniqueConstraint("template_id", "locale", "version", name="uq_template_versions_number"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    template_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.templates.id"), nullable=False
    )
    locale: Mapped[str] = mapped_column(String(35), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    subject: Mapped[str | None] = mapped_column(Text, nullable=True)
    text_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    html_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    image_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    variables: Mapped[list[str]] = mapped_column(JSONB, nullable=False)
    # Variables (dotted paths) whose value starts a link; the gateway checks them at send.
    link_variables: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default="[]")
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
