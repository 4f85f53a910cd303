import random

from shared.messaging.retry import backoff_ms, delay_level


def test_backoff_grows_exponentially_with_jitter_inside_the_step() -> None:
    rng = random.Random(7)
    for attempt, step in [(1, 1000), (2, 2000), (3, 4000), (4, 8000)]:
        wait = backoff_ms(attempt, base_ms=1000, max_ms=60_000, rng=rng)
        assert step / 2 <= wait <= step


def test_backoff_is_capped_and_retry_after_is_a_floor() -> None:
    assert backoff_ms(20, base_ms=1000, max_ms=5000, rng=random.Random(1)) <= 5000
    assert backoff_ms(1, base_ms=100, max_ms=5000, retry_after_ms=3000) >= 3000


def test_delay_level_is_the_smallest_queue_that_covers_the_wait() -> None:
    levels = [100, 200, 400, 800]
    assert delay_level(150, levels) == 200
    assert delay_level(100, levels) == 100
    assert delay_level(10_000, levels) == 800
