"""Calls that take more than one answer: walking the pages of a list, and polling a status
until it ends. The state lives here so the sync and async clients share it; they only fetch
and wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

from notifications_client.errors import WaitTimeout
from notifications_client.models import NotificationDetail, Page
from notifications_client.operations import Operation

T = TypeVar("T")


class Pager(Generic[T]):
    """Walks a list page by page.

    Pages are offsets into a list that is newest first, so items that arrive while we read push
    older ones onto the next page: an item already seen is skipped rather than given twice.
    `past_end` stops the walk early (the rest of a newest-first list is older than asked for).
    """

    def __init__(
        self,
        fetch: Callable[[int], Operation[Page[T]]],
        identity: Callable[[T], object],
        *,
        keep: Callable[[T], bool] = lambda _: True,
        past_end: Callable[[T], bool] = lambda _: False,
    ) -> None:
        self._fetch = fetch
        self._identity = identity
        self._keep = keep
        self._past_end = past_end
        self._seen: set[object] = set()
        self._page = 1
        self._done = False

    def next(self) -> Operation[Page[T]] | None:
        return None if self._done else self._fetch(self._page)

    def take(self, page: Page[T]) -> list[T]:
        items: list[T] = []
        for item in page.items:
            if self._past_end(item):
                self._done = True
                break
            key = self._identity(item)
            if key in self._seen or not self._keep(item):
                continue
            self._seen.add(key)
            items.append(item)
        if not page.meta.has_next or not page.items:
            self._done = True
        self._page += 1
        return items


class Watcher:
    """Decides, for each status read, whether the caller sees it and how long to wait next.

    A read is shown when the status or the timeline changed. The wait starts at
    `poll_interval` and grows by half each unchanged read up to `max_poll_interval`, so a
    long-running notification costs few requests and a fast one is seen at once.
    """

    def __init__(
        self,
        timeout: float | None,
        poll_interval: float = 0.2,
        max_poll_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._deadline = None if timeout is None else clock() + timeout
        self._timeout = timeout
        self._first = poll_interval
        self._interval = poll_interval
        self._max = max_poll_interval
        self._last_key: tuple[str, int] | None = None
        self.last: NotificationDetail | None = None

    def changed(self, detail: NotificationDetail) -> bool:
        key = (str(detail.status), len(detail.history))
        self.last = detail
        if key == self._last_key:
            self._interval = min(self._interval * 1.5, self._max)
            return False
        self._last_key = key
        self._interval = self._first
        return True

    def next_wait(self) -> float:
        """Seconds until the next read; raises `WaitTimeout` when the time is up."""
        if self._deadline is None:
            return self._interval
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            status = self.last.status if self.last is not None else "unknown"
            raise WaitTimeout(f"still {status} after {self._timeout:g} s", last=self.last)
        return min(self._interval, remaining)
