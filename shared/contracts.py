"""The internal HTTP contracts, defined once and used by both sides.

- `Contact`: what the user service's `GET /internal/v1/users/{id}/contact` answers (and keeps
  in its Redis cache); the gateway reads it to enrich a send.
- `TemplateVersion`: one immutable template version, as the template service's internal API
  answers it; the gateway and both workers read it and render it.

The producer validates its answer with the same model the consumer parses, so the two sides
cannot drift apart; `extra="ignore"` lets a producer add a field before its consumers read it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.rendering import TemplateFields, channel_fields, nest_data, render

Channel = Literal["email", "push"]
Platform = Literal["android", "ios", "web"]
Category = Literal["transactional", "marketing"]
"""What a template sends: `transactional` mail (a receipt, a password reset) answers something
the user did and always goes out while the channel is on; any other category carries a
one-click unsubscribe link and can be turned off on its own."""
OptOutCategory = Literal["marketing"]
"""The categories a user may turn off per channel (every category but `transactional`)."""
TRANSACTIONAL: Category = "transactional"


class _Contract(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- the user service's contact -------------------------------------------------------------


class ContactDevice(_Contract):
    token: str = Field(min_length=1)
    platform: Platform = "android"


class QuietHours(_Contract):
    """A daily window in the user's time zone (`HH:MM`), which may wrap midnight."""

    start: str
    end: str


class ContactPreferences(_Contract):
    email: bool = True
    push: bool = True
    quiet_hours: QuietHours | None = None
    categories: dict[OptOutCategory, dict[Channel, bool]] = Field(
        default_factory=dict,
        description='per-category switches by channel, e.g. `{"marketing": {"email": '
        "false}}`; a category or channel not named is on",
    )

    def allows(self, channel: str, category: str) -> bool:
        """Whether `category` may be sent on `channel` (the channel switch aside)."""
        if category == TRANSACTIONAL:
            return True
        for name, switches in self.categories.items():
            if name == category:
                return next((on for ch, on in switches.items() if ch == channel), True)
        return True


class Contact(_Contract):
    """What the gateway needs to reach a user."""

    user_id: uuid.UUID
    name: str
    email: str
    locale: str
    timezone: str
    preferences: ContactPreferences = Field(default_factory=ContactPreferences)
    devices: list[ContactDevice] = Field(default_factory=list)


# --- the template service's version ---------------------------------------------------------


class TemplateVersion(_Contract):
    """One immutable version of a template (email fields or push fields filled)."""

    code: str
    channel: Channel
    locale: str
    version: int
    name: str
    category: Category = TRANSACTIONAL
    subject: str | None = None
    text_body: str | None = None
    html_body: str | None = None
    title: str | None = None
    body: str | None = None
    data: dict[str, str] | None = None
    image_url: str | None = None
    variables: list[str] = Field(
        default_factory=list,
        description="every variable the version reads, found when it was saved: a send must "
        "give them all",
    )
    link_variables: list[str] = Field(
        default_factory=list,
        description="variables (dotted paths) whose value starts a link (`href`, `src`, push "
        "`image_url`): each must be an http, https or mailto URL "
        "(`shared.rendering.unsafe_links`)",
    )
    created_by: str | None = None
    created_at: datetime | None = None

    def fields(self) -> TemplateFields:
        """email: subject/text_body/html_body; push: title/body/image_url + `data.<key>`."""
        return channel_fields(self.channel, self.model_dump())

    def render(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """Rendered fields (push `data` folded back into a map); raises `RenderError`s."""
        return nest_data(render(self.fields(), variables))
