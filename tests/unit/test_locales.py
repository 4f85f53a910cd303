"""The one locale rule (`shared.locales`) that the user, template and gateway services share."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from services.template_service.schemas import TemplateCreate
from services.user_service.schemas import Locale
from shared.locales import locale_chain, normalize_locale


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("en", "en"),
        ("pt_br", "pt-BR"),
        ("PT-br", "pt-BR"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("sl-rozaj", "sl-rozaj"),
        ("abcde", "abcde"),  # a 5-letter language subtag is valid BCP 47
    ],
)
def test_locales_are_normalised(given: str, expected: str) -> None:
    assert normalize_locale(given) == expected


@pytest.mark.parametrize(
    "bad", ["", "e", "english language", "pt-BR\n", "../etc", "en-x-private", "a" * 40]
)
def test_malformed_locales_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_locale(bad)


def test_fallback_goes_from_region_to_language_to_default() -> None:
    assert locale_chain("pt-BR", "en") == ["pt-BR", "pt", "en"]
    assert locale_chain("zh-Hant-TW", "en") == ["zh-Hant-TW", "zh-Hant", "zh", "en"]
    assert locale_chain("en-GB", "en") == ["en-GB", "en"]
    assert locale_chain("abcde", "en") == ["abcde", "en"]
    assert locale_chain(None, "en") == ["en"]


@pytest.mark.parametrize("tag", ["abcde", "pt_br", "zh-Hant-TW", "es-419", "sl-rozaj"])
def test_a_locale_a_user_may_hold_is_one_a_template_may_be_saved_in(tag: str) -> None:
    held = TypeAdapter(Locale).validate_python(tag)
    saved = _template_in(tag)
    assert saved.locale == held


@pytest.mark.parametrize("tag", ["english!", "en-x-private", "pt-BR\n"])
def test_a_locale_refused_for_a_user_is_refused_for_a_template(tag: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Locale).validate_python(tag)
    with pytest.raises(ValidationError):
        _template_in(tag)


def _template_in(locale: str) -> TemplateCreate:
    return TemplateCreate.model_validate(
        {"code": "welcome", "name": "Welcome", "channel": "push", "locale": locale}
        | {"title": "Hi", "body": "Hello"}
    )
