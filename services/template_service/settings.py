"""Settings only the template service reads."""

from __future__ import annotations

from shared.settings import Settings, widen


class TemplateSettings(Settings):
    # The last step of the locale fallback (pt-BR -> pt -> this), and the locale of a version
    # saved without one.
    default_locale: str = "en"
    # Untrusted template source is compiled and rendered in this many child processes, each
    # capped at this much address space and killed when a job takes longer than the timeout
    # (`shared/render_pool.py`).
    template_render_workers: int = 2
    template_render_memory_mb: int = 256
    template_render_timeout_seconds: float = 0.5
    # Previews and renders per user per minute (Redis; fails open if Redis is down).
    template_render_rate_limit_per_minute: int = 30


def template_settings(settings: Settings | None = None) -> TemplateSettings:
    return widen(settings, TemplateSettings)
