"""All configuration, read from the environment (and an optional `.env`).

One class on purpose: every variable is documented once, in `.env.example`, with a default that
works on a developer machine where PostgreSQL, Redis and RabbitMQ run on localhost. A service
that needs more subclasses `Settings` in its own `settings.py`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # --- runtime -------------------------------------------------------------------------
    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    bind_host: str = "127.0.0.1"
    # Swagger UI, ReDoc and the OpenAPI document; unset: on, except in production.
    expose_docs: bool | None = None

    # --- ports (the developers' guide fixes them) ---------------------------------------
    api_gateway_port: int = 8080
    user_service_port: int = 3001
    template_service_port: int = 3000
    email_service_port: int = 2525
    push_service_port: int = 8081

    # --- where the services find each other ---------------------------------------------
    user_service_url: str = "http://127.0.0.1:3001"
    template_service_url: str = "http://127.0.0.1:3000"
    api_gateway_url: str = "http://127.0.0.1:8080"
    # The workers' HTTP side (health, metrics, DLQ admin): the gateway's operator API calls it.
    email_service_url: str = "http://127.0.0.1:2525"
    push_service_url: str = "http://127.0.0.1:8081"
    http_timeout_seconds: float = 2.0
    # TemplateClient: pinned versions are immutable (an LRU of this many); active ones expire.
    template_cache_max_versions: int = 2048
    template_active_ttl_seconds: float = 30.0

    # --- infrastructure ------------------------------------------------------------------
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/notifications"
    db_pool_size: int = 10
    db_max_overflow: int = 10
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = "notif:"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    publish_timeout_seconds: float = 5.0

    # --- secrets -------------------------------------------------------------------------
    internal_api_key: SecretStr = SecretStr("dev-internal-key-change-me")
    jwt_secret: SecretStr = SecretStr("dev-jwt-secret-change-me-please-32b")
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_ttl_seconds: int = 3600

    # --- request limits ------------------------------------------------------------------
    max_body_bytes: int = 64 * 1024

    # --- workers -------------------------------------------------------------------------
    worker_prefetch: int = 50
    worker_shutdown_seconds: float = 10.0
    retry_max_attempts: int = 5
    # How long a worker keeps retrying the `delivered` write after a successful send before it
    # gives the message back (which would send it again): covers short database outages.
    status_write_retry_seconds: float = 30.0
    retry_base_delay_ms: int = 4000
    retry_max_delay_ms: int = 300_000
    # Delay queues exist once per level; a retry waits in the smallest level that covers its
    # (jittered) backoff, so these are the only waits RabbitMQ ever holds.
    retry_delay_levels_ms: list[int] = Field(
        default_factory=lambda: [500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 300000]
    )

    # --- email ---------------------------------------------------------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_timeout_seconds: float = 10.0
    smtp_pool_size: int = 16
    email_from_address: str = "notifications@example.com"
    email_from_name: str = "Notifications"
    email_unsubscribe_url: str | None = None

    # --- push (FCM HTTP v1) --------------------------------------------------------------
    fcm_base_url: str = "http://127.0.0.1:8085"
    fcm_project_id: str = "demo-project"
    fcm_service_account_file: str | None = None
    fcm_concurrency: int = 32

    # --- local stand-ins -----------------------------------------------------------------
    inbox_smtp_port: int = 1025
    inbox_http_port: int = 8025
    fcm_standin_port: int = 8085

    # --- demo seed -----------------------------------------------------------------------
    demo_admin_email: str = "admin@example.com"
    demo_admin_password: SecretStr = SecretStr("admin-password-123")
    demo_user_email: str = "demo@example.com"
    demo_user_password: SecretStr = SecretStr("demo-password-123")
    demo_api_key: SecretStr = SecretStr("demo-api-key-0123456789abcdef")

    @field_validator("expose_docs", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `EXPOSE_DOCS=` (as in .env.example) means "decide by the environment".
        return None if value == "" else value

    @property
    def docs_exposed(self) -> bool:
        """Whether the services serve their API docs (`EXPOSE_DOCS`, else not in production)."""
        if self.expose_docs is not None:
            return self.expose_docs
        return self.environment != "production"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
