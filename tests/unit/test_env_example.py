"""`.env.example` documents every variable any service reads."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from pydantic_settings import BaseSettings

import services
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _settings_classes() -> list[type[BaseSettings]]:
    classes: list[type[BaseSettings]] = [Settings]
    for info in pkgutil.iter_modules(services.__path__):
        try:
            module = importlib.import_module(f"services.{info.name}.settings")
        except ModuleNotFoundError:
            continue
        classes += [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, BaseSettings) and v is not BaseSettings
        ]
    return classes


def test_every_setting_is_in_env_example() -> None:
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    for cls in _settings_classes():
        missing = {name.upper() for name in cls.model_fields} - documented
        assert not missing, f"{cls.__name__} fields missing from .env.example: {sorted(missing)}"
