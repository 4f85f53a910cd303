"""Body checks of the template service (no I/O); locales are in tests/unit/test_locales.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.template_service.schemas import PreviewRequest, TemplateCreate
from shared.contracts import TemplateVersion


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
