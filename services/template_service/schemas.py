"""HTTP bodies of the template service (locales follow `shared.locales`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

# One version's body is an internal contract, defined once for the service and its readers.
from shared.contracts import Category
from shared.contracts import TemplateVersion as VersionOut
from shared.locales import normalize_locale
from shared.template_client import CODE_PATTERN

Channel = Literal["email", "push"]


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store NUL in text: refuse it here with the field's name.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


NoNul = AfterValidator(_no_nul)
Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True), NoNul]
Description = Annotated[str, StringConstraints(max_length=2000), NoNul]
# A header-bound line: CR/LF in the template source could split a header.
OneLine = Annotated[str, StringConstraints(min_length=1, max_length=998, pattern=r"^[^\r\n\x00]*$")]
Body = Annotated[str, StringConstraints(min_length=1, max_length=60_000), NoNul]

EMAIL_ONLY = ("subject", "text_body", "html_body")
PUSH_ONLY = ("title", "body", "data", "image_url")


class VersionFields(BaseModel):
    """The fields of a version; which ones are required depends on the channel."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    subject: OneLine | None = None
    text_body: Body | None = None
    html_body: Body | None = None
    title: OneLine | None = None
    body: Body | None = None
    data: (
        dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], Body] | None
    ) = Field(default=None, max_length=50)
    image_url: Annotated[str, StringConstraints(min_length=1, max_length=2048), NoNul] | None = None

    def check_channel(self) -> list[dict[str, str]]:
        """Field errors for a body that does not fit its channel (empty when it fits)."""
        errors: list[dict[str, str]] = []
        required = ("subject", "text_body") if self.channel == "email" else ("title", "body")
        foreign = PUSH_ONLY if self.channel == "email" else EMAIL_ONLY
        for name in required:
            if getattr(self, name) is None:
                errors.append({"field": name, "message": f"required for {self.channel}"})
        for name in foreign:
            if getattr(self, name) is not None:
                errors.append({"field": name, "message": f"not a field of {self.channel}"})
        return errors

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (*EMAIL_ONLY, *PUSH_ONLY)}


class _LocaleMixin(BaseModel):
    locale: str | None = Field(default=None, description="e.g. en, pt, pt-BR; default: en")

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        return None if value is None else normalize_locale(value)


CATEGORY_HELP = (
    "`transactional` (the default: answers something the user did, always sent while the "
    "channel is on) or `marketing` (carries a one-click unsubscribe link; the user can turn "
    "it off per channel)"
)


class TemplateCreate(VersionFields, _LocaleMixin):
    code: Code
    name: Name
    description: Description | None = None
    category: Category = Field(default="transactional", description=CATEGORY_HELP)


class TemplateUpdate(VersionFields, _LocaleMixin):
    """A new version for (code, channel, locale); it becomes active."""

    name: Name | None = None
    description: Description | None = None
    category: Category | None = Field(
        default=None, description=CATEGORY_HELP + "; unset keeps the template's"
    )


class ActivateRequest(_LocaleMixin):
    model_config = ConfigDict(extra="forbid")

    channel: Channel


class RenderRequest(_LocaleMixin):
    model_config = ConfigDict(extra="forbid")

    channel: Channel
    version: int | None = Field(default=None, ge=1)
    variables: dict[str, Any] = Field(default_factory=dict)


class PreviewRequest(VersionFields):
    variables: dict[str, Any] = Field(default_factory=dict)


class VersionListItem(VersionOut):
    active: bool


class LocaleOut(BaseModel):
    locale: str
    active_version: int
    latest_version: int


class TemplateOut(BaseModel):
    code: str
    channel: Channel
    name: str
    category: Category
    description: str | None = None
    locales: list[LocaleOut]
    created_by: str | None = None
    created_at: datetime
    updated_at: datetime


class TemplateDetail(TemplateOut):
    active_versions: list[VersionOut]


class TemplateCodeOut(BaseModel):
    """`GET /templates/{code}`: each channel of the code with its active version per locale."""

    code: str
    channels: list[TemplateDetail]


class CreatedOut(BaseModel):
    template: TemplateOut
    version: VersionOut


class RenderOut(BaseModel):
    code: str | None = None
    channel: Channel
    locale: str | None = None
    version: int | None = None
    rendered: dict[str, Any]
    variables: list[str]
    link_variables: list[str] = Field(default_factory=list)


class DeletedOut(BaseModel):
    code: str
    channels: list[str]
