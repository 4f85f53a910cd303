"""Locale rules and body checks of the template service (no I/O)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.template_service.schemas import (
    PreviewRequest,
    TemplateCreate,
    locale_chain,
    normalize_locale,
)
from shared.contracts import TemplateVersion


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("en", "en"),
        ("pt_br", "pt-BR"),
        ("PT-br", "pt-BR"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
    ],
)
def test_locales_are_normalised(given: str, expected: str) -> None:
    assert normalize_locale(given) == expected


@pytest.mark.parametrize("bad", ["", "e", "english language", "pt-BR\n", "../etc"])
def test_malformed_locales_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_locale(bad)


def test_fallback_goes_from_region_to_language_to_default() -> None:
    assert locale_chain("pt-BR", "en") == ["pt-BR", "pt", "en"]
    assert locale_chain("zh-Hant-TW", "en") == ["zh-Hant-TW", "zh-Hant", "zh", "en"]
    assert locale_chain("en-GB", "en") == ["en-GB", "en"]
    assert locale_chain(None, "en") == ["en"]


def test_channel_fit_is_reported_per_field() -> None:
    body = PreviewRequest(channel="push", title="t", subject="s")
    assert body.check_channel() == [
        {"field": "body", "message": "required for push"},
        {"field": "subject", "message": "not a field of push"},
    ]


def test_codes_are_slugs_and_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        TemplateCreate(code="Not A Slug", channel="email", name="n", subject="s", text_body="t")
    with pytest.raises(ValidationError):
        TemplateCreate.model_validate(
            {
                "code": "ok",
                "channel": "email",
                "name": "n",
                "subject": "s",
                "text_body": "t",
                "sbject": "typo",
            }
        )


def test_template_version_exposes_fields_for_its_channel() -> None:
    email = TemplateVersion(
        code="c",
        channel="email",
        locale="en",
        version=1,
        name="n",
        subject="S {{ a }}",
        text_body="T",
        html_body=None,
        variables=["a"],
    )
    assert dict(email.fields().fields) == {
        "subject": "S {{ a }}",
        "text_body": "T",
        "html_body": None,
    }
    push = TemplateVersion(
        code="c",
        channel="push",
        locale="en",
        version=1,
        name="n",
        title="T",
        body="B",
        data={"k": "{{ a }}"},
        variables=["a"],
    )
    assert push.render({"a": "1"}) == {
        "title": "T",
        "body": "B",
        "image_url": None,
        "data": {"k": "1"},
    }
    with pytest.raises(ValidationError):
        email.version = 2  # type: ignore[misc]


def test_nul_characters_are_refused_with_the_field_name() -> None:
    with pytest.raises(ValidationError) as exc:
        TemplateCreate(code="ok", channel="email", name="n", subject="s", text_body="a\x00b")
    assert exc.value.errors()[0]["loc"] == ("text_body",)
