"""`AckWindow`: settled runs acked with one `multiple=True` frame, and a dead channel never
holds the worker (no I/O: the deliveries are plain objects with aio-pika's settle methods)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiormq.exceptions import ChannelInvalidStateError

from shared.messaging import acks
from shared.messaging.acks import AckWindow


@dataclass
class Delivery:
    delivery_tag: int
    delivered_on: Any
    hang: bool = False
    settled: list[tuple[str, int, bool]] = field(default_factory=list)
    closed: bool = False

    @property
    def channel(self) -> Any:
        if self.closed:  # what aio-pika does once the channel has closed
            raise ChannelInvalidStateError
        return self.delivered_on

    async def ack(self, multiple: bool = False) -> None:
        if self.hang:
            await asyncio.Event().wait()  # a channel whose connection died: nothing answers
        self.settled.append(("ack", self.delivery_tag, multiple))

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append(("nack", self.delivery_tag, requeue))


def _deliveries(count: int, **kwargs: Any) -> list[Delivery]:
    channel, log = object(), []
    return [Delivery(tag, channel, settled=log, **kwargs) for tag in range(1, count + 1)]


async def test_a_settled_head_run_goes_out_as_one_multiple_ack() -> None:
    window = AckWindow()
    first, second, third = _deliveries(3)
    for delivery in (first, second, third):
        window.track(delivery)  # type: ignore[arg-type]
    await window.ack_many([second, first])  # type: ignore[list-item]
    assert first.settled == [("ack", 2, True)]
    await window.ack(third)  # type: ignore[arg-type]
    assert first.settled[-1] == ("ack", 3, True)


async def test_a_settled_delivery_behind_one_in_progress_is_acked_alone() -> None:
    window = AckWindow()
    first, second = _deliveries(2)
    window.track(first)  # type: ignore[arg-type]
    window.track(second)  # type: ignore[arg-type]
    await window.ack(second)  # type: ignore[arg-type]
    assert first.settled == [("ack", 2, False)]


async def test_an_ack_on_a_dead_channel_gives_up_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(acks, "SETTLE_TIMEOUT_SECONDS", 0.05)
    window = AckWindow()
    (stuck,) = _deliveries(1, hang=True)
    window.track(stuck)  # type: ignore[arg-type]
    await asyncio.wait_for(window.ack(stuck), 5)  # type: ignore[arg-type]
    assert stuck.settled == []
    assert not window.is_open(stuck)  # type: ignore[arg-type]


async def test_deliveries_of_a_closed_channel_still_settle_without_raising() -> None:
    """After a connection loss aio-pika raises on `incoming.channel`: the window must still
    settle (quietly) what it tracked, or the worker's outcome recorder dies with it."""
    window = AckWindow()
    first, second = _deliveries(2)
    window.track(first)  # type: ignore[arg-type]
    window.track(second)  # type: ignore[arg-type]
    first.closed = second.closed = True
    await window.ack(first)  # type: ignore[arg-type]
    await window.nack(second)  # type: ignore[arg-type]
    assert not window.is_open(first) and not window.is_open(second)  # type: ignore[arg-type]
