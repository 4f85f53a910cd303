"""Input rules of the user service, checked without I/O."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.user_service.schemas import (
    DeviceIn,
    PreferencesIn,
    QuietHours,
    UserCreate,
    UserUpdate,
)

VALID = {"name": "Ada", "email": "ada@example.com", "password": "long-enough"}


def _fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("pt-br", "pt-BR"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("sl-rozaj", "sl-rozaj"),
        ("yue", "yue"),
        ("en_US", "en-US"),  # the one rule (shared.locales) reads `_` as `-`
    ],
)
def test_locales_are_bcp47_in_canonical_case(given: str, canonical: str) -> None:
    assert UserCreate(**VALID, locale=given).locale == canonical


@pytest.mark.parametrize("bad", ["e", "english!", "en-", "-en", "en US", "x" * 40, ""])
def test_non_bcp47_locales_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError) as exc:
        UserCreate(**VALID, locale=bad)
    assert _fields(exc.value) == {"locale"}


@pytest.mark.parametrize("good", ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires"])
def test_iana_timezones_are_accepted(good: str) -> None:
    assert UserCreate(**VALID, timezone=good).timezone == good


@pytest.mark.parametrize("bad", ["Mars/Olympus", "utc+1", "../../etc/passwd", "/etc/localtime", ""])
def test_other_timezones_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError) as exc:
        UserCreate(**VALID, timezone=bad)
    assert _fields(exc.value) == {"timezone"}


@pytest.mark.parametrize(
    "bad", ["Eve\r\nBcc: x@example.com", "a\x00b", "=?UTF-8?Q?=0A?=", "   ", "tab\there"]
)
def test_names_that_could_inject_headers_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError) as exc:
        UserCreate(**{**VALID, "name": bad})
    assert _fields(exc.value) == {"name"}


def test_names_are_trimmed_and_unicode_is_fine() -> None:
    assert UserCreate(**{**VALID, "name": "  Zoë Ångström  "}).name == "Zoë Ångström"


def test_unknown_fields_are_refused_everywhere() -> None:
    for model, body in [
        (UserCreate, {**VALID, "is_admin": True}),
        (UserUpdate, {"role": "admin"}),
        (PreferencesIn, {"email": True, "push": True, "sms": False}),
        (DeviceIn, {"token": "t", "platform": "ios", "user_id": "x"}),
    ]:
        with pytest.raises(ValidationError) as exc:
            model.model_validate(body)
        assert exc.value.errors()[0]["type"] == "extra_forbidden"


def test_password_length_bounds() -> None:
    with pytest.raises(ValidationError):
        UserCreate(**{**VALID, "password": "7chars!"})
    with pytest.raises(ValidationError):
        UserCreate(**{**VALID, "password": "x" * 257})
    assert UserCreate(**{**VALID, "password": "8chars!!"}).password == "8chars!!"


def test_preference_flags_must_be_real_booleans() -> None:
    with pytest.raises(ValidationError) as exc:
        PreferencesIn.model_validate_json('{"email": "true", "push": 1}')
    assert _fields(exc.value) == {"email", "push"}


@pytest.mark.parametrize(
    ("start", "end"), [("22:00", "07:00"), ("00:00", "23:59"), ("09:30", "17:00")]
)
def test_quiet_hours_accept_hh_mm_and_may_wrap_midnight(start: str, end: str) -> None:
    quiet = QuietHours(start=start, end=end)
    assert [t.strftime("%H:%M") for t in quiet.as_times()] == [start, end]


@pytest.mark.parametrize(
    ("start", "end"),
    [("24:00", "07:00"), ("7:00", "08:00"), ("22:00", "22:00"), ("22:00:00", "07:00")],
)
def test_quiet_hours_refuse_other_shapes(start: str, end: str) -> None:
    with pytest.raises(ValidationError):
        QuietHours(start=start, end=end)


def test_update_refuses_explicit_nulls_but_allows_omission() -> None:
    assert UserUpdate().model_dump(exclude_unset=True) == {}
    with pytest.raises(ValidationError) as exc:
        UserUpdate.model_validate({"name": None, "locale": None})
    assert _fields(exc.value) == {"name", "locale"}


@pytest.mark.parametrize("bad", ["with space", "tab\t", "é-token", ""])
def test_device_tokens_are_printable_ascii(bad: str) -> None:
    with pytest.raises(ValidationError) as exc:
        DeviceIn(token=bad, platform="android")
    assert _fields(exc.value) == {"token"}
