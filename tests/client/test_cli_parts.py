"""Pieces of the `notify` command without a gateway: times, CSV rows, the progress bar."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from notifications_client.cli import build_parser, bulk, main
from notifications_client.cli.bulk import CHUNK_BYTES, CHUNK_ROWS, Row, chunks, read_rows
from notifications_client.cli.output import Progress
from notifications_client.cli.when import parse_moment
from notifications_client.models import SendRequest

NOW = datetime(2030, 1, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ago", "expected"),
    [
        ("1h", True, NOW - timedelta(hours=1)),
        ("90m", True, NOW - timedelta(minutes=90)),
        ("2d12h", True, NOW - timedelta(days=2, hours=12)),
        ("+10m", False, NOW + timedelta(minutes=10)),
        ("2030-01-05T09:00:00+01:00", False, datetime(2030, 1, 5, 8, 0, tzinfo=UTC)),
    ],
)
def test_times_are_durations_or_iso_8601(text: str, ago: bool, expected: datetime) -> None:
    assert parse_moment(text, ago=ago, now=NOW) == expected


def test_a_time_that_is_neither_says_what_is_expected() -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        parse_moment("yesterday", ago=True, now=NOW)


def test_csv_rows_become_requests_with_stable_distinct_request_ids(tmp_path: Path) -> None:
    user = uuid.uuid4()
    path = tmp_path / "rows.csv"
    path.write_text(
        "User,Template,name,priority,request_id\n"
        f"{user},welcome,Ada,high,\n"
        f"{user},welcome,Ada,high,\n"  # the same content twice: two notifications
        f"{user},,Grace,7,mine-1\n"
        f"{user},welcome,Ada,urgent,\n"
        ",welcome,Nobody,,\n"
    )
    rows = read_rows(path, template="fallback", channel="push")
    again = read_rows(path, template="fallback", channel="push")

    first, twin, own, bad_priority, no_user = rows
    assert first.request is not None and twin.request is not None and own.request is not None
    assert first.request.variables == {"name": "Ada"} and first.request.priority == "high"
    assert first.request.notification_type == "push"
    assert first.request.request_id != twin.request.request_id
    assert [r.request.request_id for r in again if r.request] == [
        r.request.request_id for r in rows if r.request
    ]
    assert own.request.request_id == "mine-1" and own.request.template_code == "fallback"
    assert own.request.priority == 7
    assert bad_priority.request is None and "priority" in (bad_priority.problem or "")
    assert no_user.request is None and no_user.problem == "missing user_id"
    assert [r.number for r in rows] == [2, 3, 4, 5, 6]


def test_bulk_chunks_stay_under_the_row_and_body_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    def rows(count: int, size: int) -> list[tuple[Row, SendRequest]]:
        made = []
        for n in range(count):
            request = SendRequest(
                user_id=uuid.uuid4(), template_code="w", variables={"text": "x" * size}
            )
            made.append((Row(n + 2, request), request))
        return made

    by_size = list(chunks(rows(1200, 200)))
    assert sum(len(c) for c in by_size) == 1200 and len(by_size) > 3
    for chunk in by_size:
        body = json.dumps({"notifications": [request.body() for _, request in chunk]})
        assert len(body) < CHUNK_BYTES + 100
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 10**9)
    assert [len(c) for c in chunks(rows(1200, 1))] == [CHUNK_ROWS, CHUNK_ROWS, 200]


def test_the_progress_bar_counts_and_fails_visibly() -> None:
    progress = Progress(4, io.StringIO())
    progress.advance(ok=True)
    progress.advance(ok=False)
    assert progress.render() == "[###############---------------] 2/4  50%  failed 1"


def test_common_options_go_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--json", "--url", "http://a", "list"])
    after = parser.parse_args(["list", "--json", "--url", "http://a"])
    neither = parser.parse_args(["list"])
    assert (before.json, before.url) == (after.json, after.url) == (True, "http://a")
    assert (neither.json, neither.url, neither.timeout) == (False, None, 10.0)


def test_usage_errors_exit_2_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on port 9: a request would fail with 3, not 2.
    common = ["--url", "http://127.0.0.1:9", "--api-key", "k"]
    assert main([*common, "send", "--user", "not-a-uuid", "--template", "w"]) == 2
    assert "badly formed" in capsys.readouterr().err
    assert main([*common, "dlq", "replay", "email"]) == 2
    assert "--message-id ID, or --all" in capsys.readouterr().err
    assert main([*common, "dlq", "purge", "email"]) == 2
    assert "--yes" in capsys.readouterr().err
