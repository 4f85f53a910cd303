"""The one response envelope every JSON response of every service uses.

`{"success", "data", "error", "message", "meta"}`; validation failures add `details`.
"""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class PageMeta(BaseModel):
    total: int
    limit: int
    page: int
    total_pages: int
    has_next: bool
    has_previous: bool

    @classmethod
    def build(cls, *, total: int, page: int, limit: int) -> PageMeta:
        total_pages = math.ceil(total / limit) if limit else 0
        return cls(
            total=total,
            limit=limit,
            page=page,
            total_pages=total_pages,
            has_next=page < total_pages,
            has_previous=page > 1,
        )


class FieldError(BaseModel):
    field: str
    message: str


class Envelope(BaseModel, Generic[T]):
    """Success and error bodies share this shape so clients parse one thing."""

    model_config = ConfigDict(populate_by_name=True)

    success: bool
    data: T | None = None
    error: str | None = None
    message: str
    meta: PageMeta | None = None


class ErrorEnvelope(BaseModel):
    success: bool = False
    data: None = None
    error: str
    message: str
    meta: None = None
    details: list[FieldError] | None = None


def ok(data: Any = None, message: str = "ok", meta: PageMeta | None = None) -> dict[str, Any]:
    """A success body. Routes return this dict; FastAPI validates it against `Envelope[T]`."""
    return {"success": True, "data": data, "error": None, "message": message, "meta": meta}


def error_body(
    code: str, message: str, details: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "success": False,
        "data": None,
        "error": code,
        "message": message,
        "meta": None,
    }
    if details is not None:
        body["details"] = details
    return body
