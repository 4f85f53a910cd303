"""Settings only the gateway reads; every field is documented in `.env.example`."""

from __future__ import annotations

from shared.settings import Settings


class GatewaySettings(Settings):
    # --- rate limits (GCRA: `limit` requests per `period`, bursts up to `limit`) ----------
    gateway_rate_limit_per_key: int = 6000
    gateway_rate_limit_per_user: int = 600
    gateway_rate_limit_period_seconds: int = 60

    # --- idempotency -------------------------------------------------------------------
    idempotency_ttl_seconds: int = 24 * 3600
    # A claim older than this belongs to a request that died mid-flight; a retry may take it.
    idempotency_pending_timeout_seconds: int = 30

    # --- enrichment clients ------------------------------------------------------------
    gateway_dependency_timeout_seconds: float = 1.0
    gateway_dependency_retries: int = 2
    gateway_dependency_backoff_ms: int = 50
    breaker_failure_threshold: int = 5
    breaker_reset_seconds: float = 10.0
    # The template's active version is cached for `template_active_ttl_seconds` (shared).
    gateway_contact_cache_ttl_seconds: float = 10.0
    api_key_cache_ttl_seconds: float = 30.0

    # --- outbox and its relay ----------------------------------------------------------
    gateway_inline_publish_timeout_seconds: float = 1.0
    # The relay leaves a fresh row alone this long so it never races the inline publish.
    outbox_inline_grace_seconds: float = 10.0
    outbox_poll_interval_seconds: float = 1.0
    outbox_batch_size: int = 200
    outbox_max_backoff_seconds: float = 30.0

    # --- topic sends: subscribers per fan-out chunk (each chunk its own transactions) -----
    broadcast_chunk_size: int = 500

    # --- the reconciler (one pass at a time across gateways) -----------------------------
    reconcile_interval_seconds: float = 10.0
    # A lapsed claim, an overdue retry or a lost schedule is enqueued again this long after
    # it should have moved (and again only after the same time once more).
    reconcile_margin_seconds: float = 30.0
    # A `queued` notification with no outbox row is enqueued again after this long: longer
    # than any backlog should take to drain, since a copy of a message still queued is wasted
    # work (the claim acks it as a duplicate).
    reconcile_queued_after_seconds: float = 900.0
    reconcile_batch_size: int = 500
