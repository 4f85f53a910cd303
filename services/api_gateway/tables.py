"""The gateway's own tables, beside the status tables of `shared.notification_status`.

They share its `MetaData` (schema `api_gateway`) so one Alembic history covers the owner.
The hot path talks to them with raw SQL over asyncpg (see `store.py`); these definitions are
the reference the migrations are checked against.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from shared.notification_status import metadata, notification_statuses

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", String(100), nullable=False),
    # sha256 of the key: the key itself is shown once at creation and never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_prefix", String(16), nullable=False),
    Column("rate_limit_per_minute", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # `send` (the notification API) and `admin` (the operator API under /v1/admin).
    Column("scopes", ARRAY(Text), nullable=False, server_default=text("'{send}'::text[]")),
)

idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("api_key_id", UUID(as_uuid=True), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("claim_token", UUID(as_uuid=True), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response", JSONB, nullable=True),
    Column("notification_id", UUID(as_uuid=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_idempotency_records_expires_at", "expires_at"),
)

# Each API key lists its own notifications, newest first.
Index(
    "ix_notification_statuses_api_key_created",
    notification_statuses.c.api_key_id,
    notification_statuses.c.created_at,
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("notification_id", UUID(as_uuid=True), nullable=False),
    Column("routing_key", String(16), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("priority", Integer, nullable=False, server_default="5"),
    Column("correlation_id", String(128), nullable=True),
    # `publish`: a fresh notification; `release`: a scheduled one to move to `queued` first.
    Column("kind", String(16), nullable=False, server_default="publish"),
    Column("available_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_outbox_available_at", "available_at"),
)

# A send's `collapse_key`: the notification that opened the window and when it ends.
collapse_windows = Table(
    "collapse_windows",
    metadata,
    Column("api_key_id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", UUID(as_uuid=True), primary_key=True),
    Column("channel", String(16), primary_key=True),
    Column("collapse_key", String(128), primary_key=True),
    Column("notification_id", UUID(as_uuid=True), nullable=False),
    Column("window_ends_at", DateTime(timezone=True), nullable=False),
    Index("ix_collapse_windows_window_ends_at", "window_ends_at"),
)

# Topics: subscribers per API key, and one `broadcasts` row per topic send with its fan-out's
# cursor (the fan-out goes in chunks; a lease lets another gateway take over after a crash).
topics = Table(
    "topics",
    metadata,
    Column("api_key_id", UUID(as_uuid=True), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("description", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

topic_subscribers = Table(
    "topic_subscribers",
    metadata,
    Column("api_key_id", UUID(as_uuid=True), primary_key=True),
    Column("topic_key", String(128), primary_key=True),
    Column("user_id", UUID(as_uuid=True), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

broadcasts = Table(
    "broadcasts",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("api_key_id", UUID(as_uuid=True), nullable=False),
    Column("topic_key", String(128), nullable=False),
    Column("request", JSONB, nullable=False),
    Column("total", Integer, nullable=False),
    Column("fanned_out", Integer, nullable=False, server_default="0"),
    Column("not_sent", Integer, nullable=False, server_default="0"),
    Column("cursor", UUID(as_uuid=True), nullable=True),
    Column("state", String(16), nullable=False, server_default="fanning_out"),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(
        "ix_broadcasts_fanning_out",
        "created_at",
        postgresql_where=text("state = 'fanning_out'"),
    ),
)
