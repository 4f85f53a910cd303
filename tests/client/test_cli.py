"""The installed `notify` command, run as a subprocess against the running stack."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from notifications_client import NotificationsClient

from tests.client.conftest import free_port, spec_has

Notify = Callable[..., subprocess.CompletedProcess[str]]


def _json(result: subprocess.CompletedProcess[str]) -> object:
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def test_send_then_watch_the_timeline_until_delivered(notify: Notify, demo_user: str) -> None:
    sent = notify(
        "send", "--user", demo_user, "--template", "welcome",
        "--var", "name=Ada", "--var", "link=https://example.com/start", "--json",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    accepted = _json(sent)
    assert isinstance(accepted, dict) and accepted["status"] == "queued"

    watched = notify("status", accepted["notification_id"], "--watch", "--json")

    assert watched.returncode == 0, watched.stderr
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert events[-1]["status"] == "delivered"
    assert {e["notification_id"] for e in events} == {accepted["notification_id"]}

    shown = notify("status", accepted["notification_id"])
    assert shown.returncode == 0
    assert "status      delivered" in shown.stdout and "timeline" in shown.stdout
    ended = notify("status", accepted["notification_id"], "--watch")
    assert ended.returncode == 0 and ended.stdout == shown.stdout  # already at its end


def test_send_with_wait_reports_the_final_status(notify: Notify, demo_user: str) -> None:
    result = notify(
        "send", "--user", demo_user, "--template", "welcome", "--channel", "push",
        "--vars", '{"name": "Ada", "link": "https://example.com/start"}', "--wait", "30",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    first, final = result.stdout.splitlines()
    assert first.endswith("queued") and final.endswith("delivered")


def test_list_filters_by_status_and_time(
    notify: Notify, client: NotificationsClient, demo_user: str
) -> None:
    accepted = client.send(demo_user, "welcome", variables={"name": "Ada", "link": "https://e.x"})
    client.wait(accepted.notification_id, timeout=30)

    recent = _json(notify("list", "--status", "delivered", "--since", "1h", "--json"))
    older = _json(notify("list", "--until", "1h", "--json"))
    failed = _json(notify("list", "--status", "failed", "--json"))
    table = notify("list")

    assert isinstance(recent, list)
    assert [n["notification_id"] for n in recent] == [str(accepted.notification_id)]
    assert older == [] and failed == []
    assert str(accepted.notification_id) in table.stdout and "delivered" in table.stdout


def test_bulk_sends_each_row_once_even_when_run_again(
    notify: Notify, client: NotificationsClient, demo_user: str, tmp_path: Path
) -> None:
    csv_file = tmp_path / "welcome.csv"
    csv_file.write_text(
        "user_id,channel,name,link\n"
        f"{demo_user},email,Ada,https://example.com/a\n"
        f"{demo_user},push,Grace,https://example.com/b\n"
        f"{uuid.uuid4()},email,Nobody,https://example.com/c\n"
        ",email,Missing,https://example.com/d\n"
    )

    first = notify("bulk", str(csv_file), "--template", "welcome", "--json")
    again = notify("bulk", str(csv_file), "--template", "welcome", "--one-by-one", "--json")

    assert first.returncode == 1 and again.returncode == 1  # two rows cannot be sent
    summary = _json(first)
    assert isinstance(summary, dict)
    assert (summary["rows"], summary["accepted"], summary["failed"]) == (4, 2, 2)
    errors = {r["row"]: r["error"] for r in summary["results"] if r["error"]}
    assert errors == {4: "user_not_found", 5: "invalid_row"}
    rerun = _json(again)
    assert isinstance(rerun, dict) and rerun["replayed"] == 2
    ids = {r["notification_id"] for r in summary["results"] if r["notification_id"]}
    assert {r["notification_id"] for r in rerun["results"] if r["notification_id"]} == ids
    assert {str(n.notification_id) for n in client.list()} == ids

    human = notify("bulk", str(csv_file), "--template", "welcome")
    assert "4 rows: 2 accepted (2 already sent before), 2 failed" in human.stdout


def test_errors_are_clear_and_exit_non_zero(notify: Notify, demo_user: str) -> None:
    bad_key = notify("status", str(uuid.uuid4()), "--json", env={"NOTIFY_API_KEY": "ngw_wrong"})
    assert bad_key.returncode == 1
    assert _json(bad_key) == {
        "error": "invalid_api_key",
        "message": "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
        "status_code": 401,
        "details": [],
        "attempts": 1,
    }

    missing = notify("status", "no-such-request")
    assert missing.returncode == 1 and "notification_not_found" in missing.stderr

    nowhere = notify(
        "status", "x", "--url", f"http://127.0.0.1:{free_port()}", env={"NOTIFY_URL": ""}
    )
    assert nowhere.returncode == 3 and "is the gateway running at" in nowhere.stderr

    no_key = notify("list", env={"NOTIFY_API_KEY": ""})
    assert no_key.returncode == 2 and "NOTIFY_API_KEY" in no_key.stderr

    bad_var = notify("send", "--user", demo_user, "--template", "welcome", "--var", "oops")
    assert bad_var.returncode == 2 and "NAME=VALUE" in bad_var.stderr


@pytest.mark.skipif(
    spec_has("get", "/v1/admin/dead-letters/{channel}"), reason="this gateway has the DLQ API"
)
def test_dlq_on_a_gateway_without_the_operator_api_says_so(notify: Notify) -> None:
    result = notify("dlq", "list", "email")
    assert result.returncode == 1
    assert "does not offer this yet" in result.stderr and "not_found" in result.stderr
