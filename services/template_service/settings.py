"""Settings only the template service reads."""

from __future__ import annotations

from shared.settings import Settings, widen


class TemplateSettings(Settings):
    # The last step of the locale fallback (pt-BR -> pt -> this), and the locale of a version
    # saved without one.
    default_locale: str = "en"


def template_settings(settings: Settings | None = None) -> TemplateSettings:
    return widen(settings, TemplateSettings)
