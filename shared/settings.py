"""All configuration, read from the environment (and an optional `.env`).

One class on purpose: every variable is documented once, in `.env.example`, with a default that
works on a developer machine where PostgreSQL, Redis and RabbitMQ run on localhost. A service
that needs more subclasses `Settings` in its own `settings.py`.

Those defaults are unsafe anywhere else, so the class validates itself: with
`ENVIRONMENT=production` it refuses a secret left at its shipped value or shorter than 32 bytes,
and any `DEMO_*` value (the demo accounts exist only outside production). Every entry point
builds its settings through `load_settings`, which turns that refusal into one clear message
naming the variables and a non-zero exit, without a traceback.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.database_url import parse_database_url
from shared.redis_url import SENTINEL_SCHEME, parse_sentinel_url

# What `make run` and the test suites use for the demo seed; never present in production.
DEMO_DEFAULTS: dict[str, str] = {
    "demo_admin_email": "admin@example.com",
    "demo_admin_password": "admin-password-123",
    "demo_user_email": "demo@example.com",
    "demo_user_password": "demo-password-123",
    "demo_api_key": "demo-api-key-0123456789abcdef",
}
SHIPPED_INTERNAL_API_KEY = "dev-internal-key-change-me"
SHIPPED_UNSUBSCRIBE_SECRET = "dev-unsubscribe-secret-change-me"
MIN_SECRET_BYTES = 32
_MAILBOX = re.compile(r"[A-Za-z0-9!#$%&'*+/=^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # --- runtime -------------------------------------------------------------------------
    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    bind_host: str = "127.0.0.1"
    # Addresses (comma-separated IPs or CIDRs, `*` for any) whose X-Forwarded-For and
    # X-Forwarded-Proto uvicorn believes. Empty: nobody's, the peer address is the client.
    forwarded_allow_ips: str = ""
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
    # libpq's form; several hosts are tried in order, and `?target_session_attrs=read-write`
    # skips standbys: postgresql+asyncpg://u:p@h1:5432,h2:5432/db?target_session_attrs=read-write
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/notifications"
    db_pool_size: int = 10
    db_max_overflow: int = 10
    # redis://, rediss://, or through Sentinel: redis+sentinel://[:pw@]s1:26379,s2:26379/master/0
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = "notif:"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    publish_timeout_seconds: float = 5.0

    # --- secrets -------------------------------------------------------------------------
    internal_api_key: SecretStr = SecretStr(SHIPPED_INTERNAL_API_KEY)
    # Signs the one-click unsubscribe links (`shared/unsubscribe.py`): the email worker makes
    # them, the gateway checks them. Changing it voids every link already sent.
    unsubscribe_secret: SecretStr = SecretStr(SHIPPED_UNSUBSCRIBE_SECRET)
    # The user service's Ed25519 signing key (PKCS#8 PEM), inline or as a file; only the user
    # service reads them (it refuses to start in production without one). Elsewhere an unset
    # key is generated once into `.run/`. Previous public keys (a PEM bundle) stay published
    # in the JWKS after a rotation, so tokens signed before it still verify.
    jwt_private_key: SecretStr | None = None
    jwt_private_key_file: str | None = None
    jwt_previous_public_keys_file: str | None = None

    # --- access-token verification (every service that accepts a user's token) -----------
    # The user service's public keys are fetched from its JWKS and kept this long; an unknown
    # `kid` refetches at most once per `jwks_refetch_min_seconds`.
    jwks_cache_seconds: float = 300.0
    jwks_refetch_min_seconds: float = 1.0
    # How long a process trusts a user's token version before asking Redis again: the delay
    # after which a revocation (password change, deletion, revoke) holds everywhere.
    token_version_cache_seconds: float = 1.0

    # --- request limits ------------------------------------------------------------------
    max_body_bytes: int = 64 * 1024
    # Request headers over this many bytes in total (names and values) get 431.
    max_header_bytes: int = 16 * 1024

    # --- metrics -------------------------------------------------------------------------
    # When set, `/metrics` needs `Authorization: Bearer <token>`. In production `/metrics` is
    # closed (401) until it is set; elsewhere it is open without one.
    metrics_bearer_token: SecretStr | None = None

    # --- traces (OpenTelemetry) ----------------------------------------------------------
    # The OTLP/HTTP collector (e.g. `http://jaeger:4318`); spans go to `<it>/v1/traces`.
    # Unset or empty: tracing is off and costs nothing (`shared/tracing.py`).
    otel_exporter_otlp_endpoint: str | None = None

    # --- workers ---------------------------------------------------------------------------
    worker_prefetch: int = 50
    worker_shutdown_seconds: float = 10.0
    # A claim lasts this long unless the worker extends it (it does, every third of it, while
    # a send runs); a crashed worker's claims lapse after it and its redelivered (parked)
    # messages take them over.
    claim_lease_seconds: float = 15.0
    # Claims of one attempt that ended without an outcome (crashes, handler errors) before the
    # notification is failed with `handler_error`.
    max_claims_per_attempt: int = 5
    # Retries go on for this long after acceptance, then the notification fails.
    retry_budget_seconds: float = 24 * 3600.0
    # How long a worker keeps retrying a status write after the provider accepted a message
    # before giving the message back (which could send it again): rides out database outages.
    status_write_retry_seconds: float = 300.0
    retry_base_delay_ms: int = 4000
    retry_max_delay_ms: int = 600_000
    # Delay queues exist once per level; a retry waits in the smallest level that covers its
    # (jittered) backoff, so these are the only waits RabbitMQ ever holds.
    retry_delay_levels_ms: list[int] = Field(
        default_factory=lambda: [
            500,
            1000,
            2000,
            4000,
            8000,
            16000,
            32000,
            64000,
            128000,
            300000,
            600000,
        ]
    )
    # After this many provider failures in a row the worker stops consuming and probes the
    # provider every `provider_probe_seconds` until it answers.
    provider_failure_threshold: int = 5
    provider_probe_seconds: float = 3.0
    # Before every send a worker applies the user's current contact (opt-outs, address,
    # devices), cached this long per worker and dropped at once when the user service
    # announces a change. Off only for a deployment that wants acceptance-time decisions.
    delivery_policy_check: bool = True
    worker_contact_cache_ttl_seconds: float = 5.0

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
    # Where people reach the gateway from outside (the unsubscribe links point there; use an
    # https URL in production: RFC 8058 one-click needs it), and an optional mailbox that takes
    # `subject=unsubscribe-<token>` mails, offered as the second `List-Unsubscribe` choice.
    public_base_url: str = "http://127.0.0.1:8080"
    unsubscribe_mailto: str | None = None

    # --- push (FCM HTTP v1) --------------------------------------------------------------
    fcm_base_url: str = "http://127.0.0.1:8085"
    fcm_project_id: str = "demo-project"
    fcm_service_account_file: str | None = None
    fcm_concurrency: int = 32

    # --- local stand-ins -----------------------------------------------------------------
    inbox_smtp_port: int = 1025
    inbox_http_port: int = 8025
    fcm_standin_port: int = 8085

    # --- demo seed (outside production only: `DEMO_DEFAULTS` fill what is not given) -------
    demo_admin_email: str | None = None
    demo_admin_password: SecretStr | None = None
    demo_user_email: str | None = None
    demo_user_password: SecretStr | None = None
    demo_api_key: SecretStr | None = None

    @field_validator(
        "jwt_private_key",
        "jwt_private_key_file",
        "jwt_previous_public_keys_file",
        "unsubscribe_mailto",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `.env.example` lists them as `NAME=`: empty means "not configured".
        return None if value == "" else value

    @field_validator("database_url")
    @classmethod
    def _database_url_is_libpq(cls, value: str) -> str:
        parse_database_url(value)  # a ValueError names the problem, never the URL
        return value

    @field_validator("redis_url")
    @classmethod
    def _sentinel_url_is_complete(cls, value: str) -> str:
        if urlsplit(value).scheme == SENTINEL_SCHEME:
            parse_sentinel_url(value)  # a ValueError names the problem, never the URL
        return value

    @field_validator("public_base_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        # It goes into an email header: a plain http(s) URL, nothing that could split a header.
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or not value.isprintable():
            raise ValueError("must be an http or https URL")
        if any(c in value for c in " <>,?#"):
            raise ValueError("must be a base URL without spaces, <>, commas, query or fragment")
        return value

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _mailbox(cls, value: str | None) -> str | None:
        if value is not None and not _MAILBOX.fullmatch(value):
            raise ValueError("must be a plain email address (name@domain)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _demo_defaults_outside_production(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("environment", "development") != "production":
            given = {k: v for k, v in data.items() if k not in DEMO_DEFAULTS or _given(v)}
            data = {**DEMO_DEFAULTS, **given}
        return data

    @model_validator(mode="after")
    def _refuse_unsafe_configuration(self) -> Settings:
        if self.jwt_private_key is not None and self.jwt_private_key_file is not None:
            raise ValueError("set JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE, not both")
        if self.environment == "production":
            problems = self.production_problems()
            if problems:
                raise ValueError("unsafe for production:" + "".join(f"\n  - {p}" for p in problems))
        return self

    def production_problems(self) -> list[str]:
        """What makes these settings unsafe for production, one line per variable.

        Subclasses extend it with their own secrets (the user service: its signing key).
        """
        problems = [
            f"{field.upper()} must be unset in production (the demo seed never runs there)"
            for field in DEMO_DEFAULTS
            if _given(getattr(self, field))
        ]
        problems += _secret_problems(
            "INTERNAL_API_KEY", self.internal_api_key, SHIPPED_INTERNAL_API_KEY
        )
        problems += _secret_problems(
            "UNSUBSCRIBE_SECRET", self.unsubscribe_secret, SHIPPED_UNSUBSCRIBE_SECRET
        )
        if urlsplit(self.rabbitmq_url).password == "guest":
            problems.append("RABBITMQ_URL uses the shipped guest credentials")
        return problems

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


def _secret_problems(name: str, secret: SecretStr, shipped: str) -> list[str]:
    """A shared secret left at its shipped value or too short to resist guessing."""
    value = secret.get_secret_value()
    if value == shipped:
        return [f"{name} is the shipped default; set a random value"]
    if len(value.encode()) < MIN_SECRET_BYTES:
        return [f"{name} is shorter than {MIN_SECRET_BYTES} bytes"]
    return []


def _given(value: object) -> bool:
    """Whether a setting holds something (an empty `DEMO_X=` line counts as unset)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value is not None and value != ""


SettingsT = TypeVar("SettingsT", bound=Settings)


class ConfigurationRefused(SystemExit):
    """Raised by `load_settings`: exits the process with a readable message, no traceback."""


def describe_settings_error(exc: ValidationError) -> str:
    """The errors of a settings validation, naming variables and never echoing a value (the
    input could be a secret)."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        location = ".".join(str(part) for part in error["loc"]).upper()
        lines.append(f"{location}: {message}" if location else message)
    return "\n".join(lines)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Read `cls` from the environment, or exit with the reason (every entry point uses this)."""
    try:
        return cls()
    except ValidationError as exc:
        raise ConfigurationRefused(f"refusing to start: {describe_settings_error(exc)}") from None


def refuse_demo_in_production(settings: Settings) -> None:
    """The demo seed's guard: its accounts and key are public knowledge."""
    if settings.environment == "production":
        raise ConfigurationRefused("refusing to seed: the demo seed never runs in production")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings(Settings)


def widen(settings: Settings | None, cls: type[SettingsT]) -> SettingsT:
    """A service's own settings class from plain `Settings` (e.g. a test's base settings),
    keeping every value given and the service's defaults for its own fields; read from the
    environment (refusing an unsafe one) when none are given."""
    if settings is None:
        return load_settings(cls)
    if isinstance(settings, cls):
        return settings
    return cls.model_validate(settings.model_dump())
