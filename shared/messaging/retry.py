"""The one retry policy: exponential backoff with jitter, snapped to a delay-queue level."""

from __future__ import annotations

import random
from collections.abc import Sequence


def backoff_ms(
    attempt: int,
    *,
    base_ms: int,
    max_ms: int,
    retry_after_ms: int | None = None,
    rng: random.Random | None = None,
) -> int:
    """The wait before attempt `attempt + 1`, after `attempt` failed.

    "Equal jitter": half the exponential step is fixed, half random, so waits spread out
    without collapsing to zero. A provider's Retry-After is a floor, never shortened.
    """
    step = min(max_ms, base_ms * 2 ** max(0, attempt - 1))
    wait = step / 2 + (rng or random).uniform(0, step / 2)
    if retry_after_ms is not None:
        wait = max(wait, retry_after_ms)
    return int(min(wait, max_ms) if retry_after_ms is None else wait)


def delay_level(wait_ms: int, levels_ms: Sequence[int]) -> int:
    """The smallest delay queue that waits at least `wait_ms` (the largest if none does)."""
    ordered = sorted(levels_ms)
    for level in ordered:
        if level >= wait_ms:
            return level
    return ordered[-1]
