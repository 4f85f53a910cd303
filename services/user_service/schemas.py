"""HTTP bodies of the user service: what callers may send and what they get back.

Every input model forbids unknown fields, so a typo is a 422 naming the field instead of a
silently ignored value. Anything that may end up in an email header (names) refuses control
characters and RFC 2047 encoded-word markers, because this Python lets an encoded newline
inject a header (see FACTS: CVE-2024-6923).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, time
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from shared.contracts import Channel, ContactPreferences, OptOutCategory
from shared.locales import MAX_LOCALE_LENGTH, normalize_locale

Role = Literal["user", "admin"]
Platform = Literal["android", "ios", "web"]

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_DEVICE_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"


def is_device_token(value: str) -> bool:
    return len(value) <= 4096 and _DEVICE_TOKEN.match(value) is not None


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def _timezone(value: str) -> str:
    if value not in _timezones():
        raise ValueError("must be an IANA time zone name such as 'UTC' or 'Europe/Paris'")
    return value


def _name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or "=?" in value or "?=" in value:
        raise ValueError("must not contain control characters or encoded-word sequences")
    return value


def _hhmm(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError("must be a 24-hour time 'HH:MM'")
    return value


def _token(value: str) -> str:
    if not is_device_token(value):
        raise ValueError("must be printable ASCII without spaces")
    return value


Locale = Annotated[
    str, Field(min_length=2, max_length=MAX_LOCALE_LENGTH), AfterValidator(normalize_locale)
]
TimeZone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_timezone)]
Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_name)]
PASSWORD_RULES = (
    "8 to 256 characters, and hard to guess: zxcvbn must score it at least 3 of 4 (its first "
    "72 characters), so common passwords, repeats, keyboard patterns and your own name or email "
    "are refused with 422 `weak_password` saying why."
)
Password = Annotated[str, Field(min_length=8, max_length=256, description=PASSWORD_RULES)]
HHMM = Annotated[str, AfterValidator(_hhmm)]
DeviceToken = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_token)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


# --- preferences ---------------------------------------------------------------------------


class QuietHours(Input):
    """A daily window, in the user's timezone, when nothing is pushed; may wrap midnight."""

    start: HHMM
    end: HHMM

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    def as_times(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


CategorySwitches = dict[OptOutCategory, dict[Channel, StrictBool]]


class PreferencesIn(Input):
    email: StrictBool
    push: StrictBool
    quiet_hours: QuietHours | None = None
    categories: CategorySwitches | None = Field(
        default=None,
        description='per-category switches by channel, e.g. `{"marketing": {"email": '
        "false}}` (`true` turns one back on); unset keeps the stored ones. Transactional mail "
        "has no switch: only the channel's own turns it off.",
    )


class UnsubscribeIn(Input):
    """One category off on one channel (what an unsubscribe link asks)."""

    channel: Channel
    category: OptOutCategory


class RegistrationPreferences(Input):
    """At registration both flags default to on."""

    email: StrictBool = True
    push: StrictBool = True
    quiet_hours: QuietHours | None = None


# --- users ---------------------------------------------------------------------------------


class UserCreate(Input):
    name: Name
    email: EmailStr = Field(max_length=254)
    password: Password
    locale: Locale = "en"
    timezone: TimeZone = "UTC"
    preferences: RegistrationPreferences | None = None
    # The legacy registration body: a device token that becomes an android device.
    push_token: DeviceToken | None = None


class UserUpdate(Input):
    """Partial update. A password or email change needs `current_password` unless an admin
    changes another user's account."""

    name: Name | None = None
    email: EmailStr | None = Field(default=None, max_length=254)
    locale: Locale | None = None
    timezone: TimeZone | None = None
    password: Password | None = None
    current_password: str | None = Field(default=None, max_length=256)

    @field_validator("name", "email", "locale", "timezone", "password", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Omit a field to keep it; an explicit null is a mistake, not "clear it".
        if value is None:
            raise ValueError("may not be null; omit the field to keep its value")
        return value


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    email: str
    role: Role
    locale: str
    timezone: str
    created_at: datetime
    updated_at: datetime


class UserWithPreferences(UserOut):
    preferences: ContactPreferences


# --- auth ----------------------------------------------------------------------------------


class LoginIn(Input):
    # Not EmailStr: a malformed email must get the same answer as an unknown one. Control
    # characters are still refused (PostgreSQL cannot even compare a string holding NUL).
    email: str = Field(min_length=1, max_length=254, pattern=NO_CONTROL_CHARS)
    password: str = Field(min_length=1, max_length=256)


class TokenOut(BaseModel):
    access_token: str = Field(description="a JWT (EdDSA) for `Authorization: Bearer`")
    refresh_token: str = Field(description="opaque; exchange it at `/auth/refresh`, once")
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")


class RefreshIn(Input):
    refresh_token: str = Field(min_length=1, max_length=256)


class Jwk(BaseModel):
    """An Ed25519 public key (RFC 8037) that verifies access tokens."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    alg: Literal["EdDSA"]
    use: Literal["sig"]


class Jwks(BaseModel):
    keys: list[Jwk]


class TokenVersionOut(BaseModel):
    user_id: uuid.UUID
    token_version: int


# --- devices -------------------------------------------------------------------------------


class DeviceIn(Input):
    token: DeviceToken
    platform: Platform


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    token: str
    platform: Platform
    created_at: datetime


# --- internal ------------------------------------------------------------------------------


class DeviceTokenRef(Input):
    """A device token in a body, never in a URL: URLs end up in access logs and proxies."""

    token: DeviceToken
