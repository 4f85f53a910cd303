"""Settling deliveries in as few frames as possible, without holding any back.

`AckWindow.ack_many` marks a group of deliveries settled, then acks the settled run at the
head of each channel with one `multiple=True` frame. A settled delivery behind one still in
progress is acked on its own at once, so a slow send never holds finished messages (and the
prefetch slots they occupy) hostage. Requeues go out at once, one by one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

logger = logging.getLogger("shared.messaging.acks")


class _State(Enum):
    IN_PROGRESS = 0
    SETTLED = 1
    """Finished, not acked yet: the head run is acked together."""
    DONE = 2
    """Acked on its own, or requeued: nothing left to send for it."""


@dataclass
class _Entry:
    incoming: AbstractIncomingMessage
    channel: int
    """Which channel delivered it, read once at delivery: aio-pika raises on
    `incoming.channel` once that channel has closed, and settling must still work then."""
    state: _State = _State.IN_PROGRESS


class AckWindow:
    def __init__(self) -> None:
        self._channels: dict[int, deque[_Entry]] = {}
        self._entries: dict[int, _Entry] = {}
        """By `id(incoming)`: looking a delivery up never touches its (maybe dead) channel."""

    def track(self, incoming: AbstractIncomingMessage) -> None:
        """Call in delivery order, as soon as a message arrives (its channel is open then)."""
        entry = _Entry(incoming, id(incoming.channel))
        self._channels.setdefault(entry.channel, deque()).append(entry)
        self._entries[id(incoming)] = entry

    def is_open(self, incoming: AbstractIncomingMessage) -> bool:
        """Tracked and not settled yet."""
        return id(incoming) in self._entries

    async def ack(self, incoming: AbstractIncomingMessage) -> None:
        await self.ack_many([incoming])

    async def ack_many(self, incomings: Iterable[AbstractIncomingMessage]) -> None:
        channels: set[int] = set()
        for incoming in incomings:
            entry = self._entries.pop(id(incoming), None)
            if entry is None:
                await _settle_quietly(incoming.ack())
                continue
            entry.state = _State.SETTLED
            channels.add(entry.channel)
        for channel in channels:
            await self._flush(channel)

    async def nack(self, incoming: AbstractIncomingMessage, *, requeue: bool = True) -> None:
        entry = self._entries.pop(id(incoming), None)
        await _settle_quietly(incoming.nack(requeue=requeue))
        if entry is not None:
            entry.state = _State.DONE
            await self._flush(entry.channel)

    async def _flush(self, channel: int) -> None:
        queue = self._channels.get(channel)
        if not queue:
            return
        last: AbstractIncomingMessage | None = None
        while queue and queue[0].state is not _State.IN_PROGRESS:
            entry = queue.popleft()
            if entry.state is _State.SETTLED:
                last = entry.incoming
        if last is not None:
            await _settle_quietly(last.ack(multiple=True))
        queue = self._channels.get(channel)
        if not queue:
            return
        behind = [entry for entry in queue if entry.state is _State.SETTLED]
        for entry in behind:
            entry.state = _State.DONE
        for entry in behind:  # (deliveries may arrive while these are sent)
            await _settle_quietly(entry.incoming.ack())


SETTLE_TIMEOUT_SECONDS = 5.0
"""An ack is one frame written to the socket. On a channel whose connection died mid-way it
can wait for good; the broker redelivers such a message anyway, so waiting is never useful."""


async def _settle_quietly(settle: Awaitable[Any]) -> None:
    """Ack/nack on a channel that may be closing (or already dead): never raises, never
    hangs; the broker redelivers whatever was not settled, and the claim decides then."""
    try:
        await asyncio.wait_for(settle, SETTLE_TIMEOUT_SECONDS)
    except Exception as exc:
        logger.warning(
            "settling a message failed (%s); the broker will redeliver", type(exc).__name__
        )
