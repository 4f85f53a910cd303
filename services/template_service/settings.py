"""Settings only the template service reads."""

from __future__ import annotations

from shared.settings import Settings, load_settings


class TemplateSettings(Settings):
    # The last step of the locale fallback (pt-BR -> pt -> this), and the locale of a version
    # saved without one.
    default_locale: str = "en"


def template_settings(settings: Settings | None = None) -> TemplateSettings:
    """Widen plain `Settings` (e.g. a test's `base_settings`) to this service's settings,
    keeping every value given and the defaults for the service's own fields."""
    if settings is None:
        return load_settings(TemplateSettings)
    if isinstance(settings, TemplateSettings):
        return settings
    return TemplateSettings.model_validate(settings.model_dump())
