"""The overview's arithmetic: rates from counter samples, and chart geometry."""

from __future__ import annotations

from services.api_gateway.console.overview import build_view, summarise


def _sample(at: float, accepted: float, delivered: float, dead: float) -> object:
    return summarise(
        at,
        [
            ("notifications_gateway_accepted_total", {"notification_type": "email"}, accepted),
            (
                "notifications_messages_consumed_total",
                {"queue": "email.queue", "outcome": "delivered"},
                delivered,
            ),
            (
                "notifications_messages_consumed_total",
                {"queue": "email.queue", "outcome": "failed"},
                99.0,
            ),
            (
                "notifications_dead_lettered_total",
                {"queue": "email.queue", "reason": "permanent_failure"},
                dead,
            ),
            ("notifications_queue_messages", {"queue": "failed.queue"}, 3.0),
            ("notifications_queue_messages", {"queue": "failed.queue"}, 4.0),
            ("notifications_gateway_breaker_open", {"dependency": "user_service"}, 1.0),
        ],
    )


def test_rates_are_differences_per_second_and_survive_a_restart() -> None:
    samples = [_sample(100, 10, 5, 1), _sample(102, 30, 9, 2), _sample(104, 4, 1, 2)]
    view = build_view(samples, now=104)  # type: ignore[arg-type]
    # 20 in 2 s, then a restart (30 -> 4): counted from zero, never negative.
    assert [values[0] for _, values in view["accepted"].rows] == [10.0, 2.0]
    email = next(line for line in view["accepted"].lines if line.label == "email")
    assert email.latest == 2.0 and len(email.points.split()) == 2
    delivered = next(line for line in view["delivered"].lines if line.label == "email")
    assert delivered.latest == 0.5
    assert {b.label: b.value for b in view["failures"].bars} == {"permanent_failure": 1.0}
    assert {b.label: b.value for b in view["queues"].bars} == {"failed.queue": 4.0}
    assert view["breakers"] == [("user_service", 1.0)]
    assert view["accepted"].since == "-60 s"


def test_one_sample_is_not_enough_for_a_rate() -> None:
    view = build_view([_sample(100, 1, 1, 0)], now=100)  # type: ignore[list-item]
    assert view["has_data"] is False
    assert all(line.points == "" for line in view["accepted"].lines)
