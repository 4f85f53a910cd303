"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

import pytest

from services.api_gateway.breaker import BreakerOpen, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("dep", failure_threshold=3, reset_seconds=10, clock=clock)


def test_opens_after_consecutive_failures_and_refuses_with_retry_after() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 4
    with pytest.raises(BreakerOpen) as refused:
        breaker.before_call()
    assert refused.value.retry_after == pytest.approx(6)
    assert refused.value.retry_after_header == "6"


def test_a_success_resets_the_failure_count() -> None:
    breaker = _breaker(Clock())
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the probe
    with pytest.raises(BreakerOpen):
        breaker.before_call()  # others wait for the probe
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()


def test_a_failed_probe_opens_again_at_once() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_a_probe_that_never_reports_does_not_wedge_the_breaker() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10
    breaker.before_call()  # the probe's caller is cancelled and never reports
    clock.now += 10
    breaker.before_call()  # a new probe is allowed
