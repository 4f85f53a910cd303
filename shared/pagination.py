"""One pagination dependency and one page shape for every list of every service.

A list route takes `pagination: PaginationQuery` (`?page=` from 1, `?limit=` up to 100) and
answers `page_of(items, total, pagination)`: the envelope with `meta` filled
(`total, limit, page, total_pages, has_next, has_previous`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query

from shared.envelope import PageMeta, ok

MAX_PAGE = 100_000
MAX_LIMIT = 100
DEFAULT_LIMIT = 20


@dataclass(frozen=True)
class Pagination:
    page: int = 1
    limit: int = DEFAULT_LIMIT

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    def meta(self, total: int) -> PageMeta:
        return PageMeta.build(total=total, page=self.page, limit=self.limit)


async def _pagination(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number")] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = DEFAULT_LIMIT,
) -> Pagination:
    return Pagination(page=page, limit=limit)


PaginationQuery = Annotated[Pagination, Depends(_pagination)]


def page_of(
    items: list[Any], total: int, pagination: Pagination, message: str = "ok"
) -> dict[str, Any]:
    """The envelope of one page of a list (plain data, so any JSON encoder can write it)."""
    body = ok(items, message=message)
    body["meta"] = pagination.meta(total).model_dump()
    return body
