"""`notify`: the gateway from a shell.

    notify send --user ID --template welcome --var name=Ada [--channel push] [--send-at 10m]
    notify status ID [--watch]
    notify list --status failed --since 1h
    notify bulk FILE.csv
    notify dlq list|show|replay|purge CHANNEL

Configured by NOTIFY_URL and NOTIFY_API_KEY, or --url and --api-key. `--json` prints one JSON
document (a JSON line per event for `status --watch`). Exit status: 0 done, 1 the gateway
refused or the notification was not delivered, 2 bad usage or configuration, 3 the gateway
could not be reached. Argument parsing and the progress bar use the standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from notifications_client.async_client import AsyncNotificationsClient
from notifications_client.cli.bulk import RowResult, read_rows, send_rows
from notifications_client.cli.output import (
    Output,
    Progress,
    describe,
    retry_text,
    table,
    timeline_line,
)
from notifications_client.cli.when import parse_moment
from notifications_client.client import NotificationsClient
from notifications_client.errors import ConnectionFailed, EndpointNotFound, NotificationsError
from notifications_client.models import NotificationDetail, NotificationStatus

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_URL = "http://127.0.0.1:8080"

Handler = Callable[[argparse.Namespace, NotificationsClient, Output], int]


class UsageError(Exception):
    """Bad arguments found after parsing (a malformed --var, say): exit 2."""


# --- commands --------------------------------------------------------------------------


def cmd_send(args: argparse.Namespace, client: NotificationsClient, out: Output) -> int:
    variables: dict[str, Any] = {}
    if args.vars:
        try:
            loaded = json.loads(args.vars)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--vars is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError("--vars must be a JSON object")
        variables.update(loaded)
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--var takes NAME=VALUE, not {item!r}")
        variables[name] = value
    send_at = _moment(args.send_at, ago=False, flag="--send-at") if args.send_at else None
    accepted = client.send(
        args.user,
        args.template,
        channel=args.channel,
        variables=variables,
        request_id=args.request_id,
        priority=_priority(args.priority),
        locale=args.locale,
        send_at=send_at,
        idempotency_key=args.idempotency_key,
    )
    final = None
    if args.wait is not None:
        final = client.wait(accepted.notification_id, timeout=args.wait)
    if out.json_mode:
        document: dict[str, Any] = {
            **accepted.model_dump(mode="json"),
            "replayed": accepted.replayed,
        }
        if final is not None:
            document["final"] = final.model_dump(mode="json")
        out.document(document)
    else:
        note = " (replayed: this request was already accepted)" if accepted.replayed else ""
        reason = f" ({accepted.status_reason})" if accepted.status_reason else ""
        out.line(f"{accepted.notification_id}  {accepted.status}{reason}{note}")
        if final is not None:
            out.line(f"{final.notification_id}  {final.status}")
    if final is not None and final.status != NotificationStatus.DELIVERED:
        return EXIT_FAILED
    return EXIT_OK


def cmd_status(args: argparse.Namespace, client: NotificationsClient, out: Output) -> int:
    if not args.watch:
        detail = client.status(args.ref)
        if out.json_mode:
            out.document(detail)
        else:
            for text in describe(detail):
                out.line(text)
        return EXIT_OK
    shown = 0
    described = out.json_mode  # a JSON stream has no heading
    final: NotificationDetail | None = None
    for final in client.watch(args.ref, timeout=args.timeout_watch):
        if not described:
            for text in describe(final):  # the first read: the whole notification so far
                out.line(text)
            described, shown = True, len(final.history)
            continue
        for entry in final.history[shown:]:
            if out.json_mode:
                out.json_line(
                    {"notification_id": str(final.notification_id), **entry.model_dump(mode="json")}
                )
            else:
                out.line(timeline_line(entry))
        shown = len(final.history)
    assert final is not None
    return EXIT_OK if final.status == NotificationStatus.DELIVERED else EXIT_FAILED


def cmd_list(args: argparse.Namespace, client: NotificationsClient, out: Output) -> int:
    items = []
    for item in client.list(
        user_id=args.user,
        status=args.status,
        channel=args.channel,
        created_after=_moment(args.since, ago=True, flag="--since") if args.since else None,
        created_before=_moment(args.until, ago=True, flag="--until") if args.until else None,
        page_size=min(100, args.limit) if args.limit else 100,
    ):
        items.append(item)
        if args.limit and len(items) >= args.limit:
            break
    if out.json_mode:
        out.document(items)
        return EXIT_OK
    rows = [["CREATED", "NOTIFICATION", "STATUS", "CHANNEL", "TEMPLATE", "USER"]]
    rows += [
        [
            i.created_at.isoformat(timespec="seconds"),
            str(i.notification_id),
            str(i.status),
            str(i.notification_type),
            i.template_code,
            str(i.user_id),
        ]
        for i in items
    ]
    for text in table(rows):
        out.line(text)
    out.note(f"{len(items)} notification(s)")
    return EXIT_OK


def cmd_bulk(args: argparse.Namespace, client: NotificationsClient, out: Output) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    try:
        rows = read_rows(path, template=args.template, channel=args.channel)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a UTF-8 CSV file: {exc}") from None
    if not rows:
        raise UsageError(f"{path} has no rows (the first line must name the columns)")
    progress = Progress(len(rows), out.stderr)

    async def run() -> list[RowResult]:
        async with AsyncNotificationsClient(
            args.url,
            args.api_key,
            timeout=args.timeout,
            on_retry=lambda event: progress.message(retry_text(event)),
        ) as aclient:
            return await send_rows(
                aclient,
                rows,
                concurrency=args.concurrency,
                progress=progress,
                use_bulk=not args.one_by_one,
            )

    results = asyncio.run(run())
    progress.finish()
    _bulk_summary(results, out)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def _bulk_summary(results: list[RowResult], out: Output) -> None:
    accepted = [r for r in results if r.ok]
    replayed = [r for r in accepted if r.replayed]
    failed = len(results) - len(accepted)
    if out.json_mode:
        out.document(
            {
                "rows": len(results),
                "accepted": len(accepted),
                "replayed": len(replayed),
                "failed": failed,
                "results": [asdict(r) for r in results],
            }
        )
        return
    lines = [["ROW", "RESULT", "NOTIFICATION / ERROR", "STATUS / MESSAGE"]]
    for r in results:
        if r.ok:
            result = "replayed" if r.replayed else "ok"
            lines.append([str(r.row), result, r.notification_id or "", r.status or ""])
        else:
            lines.append([str(r.row), "failed", r.error or "", r.message or ""])
    for text in table(lines):
        out.line(text)
    out.line(
        f"{len(results)} rows: {len(accepted)} accepted ({len(replayed)} already sent before), "
        f"{failed} failed"
    )


def _dlq_list(args: argparse.Namespace, client: NotificationsClient, out: Output) -> None:
    items = []
    for item in client.dead_letters.list(args.channel):
        items.append(item)
        if args.limit and len(items) >= args.limit:
            break
    if out.json_mode:
        out.document(items)
        return
    rows = [["MESSAGE", "NOTIFICATION", "FAILED AT", "REASON"]]
    rows += [
        [
            d.message_id,
            str(d.notification_id or "-"),
            d.failed_at.isoformat(timespec="seconds") if d.failed_at else "-",
            d.reason or "-",
        ]
        for d in items
    ]
    for text in table(rows):
        out.line(text)
    out.note(f"{len(items)} dead letter(s) in {args.channel}")


def _dlq_show(args: argparse.Namespace, client: NotificationsClient, out: Output) -> None:
    letter = client.dead_letters.get(args.channel, args.message_id)
    if out.json_mode:
        out.document(letter)
        return
    for name, value in letter.model_dump(mode="json").items():
        out.line(f"{name:<16}{value}")


def _dlq_replay(args: argparse.Namespace, client: NotificationsClient, out: Output) -> None:
    if args.message_id is None and not args.all:
        raise UsageError("say which: --message-id ID, or --all")
    replayed = client.dead_letters.replay(args.channel, args.message_id)
    if out.json_mode:
        out.document(replayed)
    else:
        out.line(
            f"replayed {len(replayed.replayed)} message(s) from {args.channel}"
            + (f", skipped {len(replayed.skipped)}" if replayed.skipped else "")
        )


def _dlq_purge(args: argparse.Namespace, client: NotificationsClient, out: Output) -> None:
    if not args.yes:
        raise UsageError("purging drops every dead letter for good: add --yes")
    purged = client.dead_letters.purge(args.channel)
    if out.json_mode:
        out.document(purged)
    else:
        out.line(f"purged {purged.purged} message(s) from {args.channel}")


_DLQ = {"list": _dlq_list, "show": _dlq_show, "replay": _dlq_replay, "purge": _dlq_purge}


def cmd_dlq(args: argparse.Namespace, client: NotificationsClient, out: Output) -> int:
    _DLQ[args.dlq_command](args, client, out)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, client: NotificationsClient, out: Output) -> int:
    detail = client.cancel(args.ref)
    if out.json_mode:
        out.document(detail)
    else:
        out.line(f"{detail.notification_id}  {detail.status}")
    return EXIT_OK


# --- arguments -------------------------------------------------------------------------


def _priority(text: str) -> Any:
    return int(text) if text.isdigit() else text


def _moment(text: str, *, ago: bool, flag: str) -> Any:
    try:
        return parse_moment(text, ago=ago)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _common(suppress: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the command (`notify --json list`, `notify list
    --json`): on the command's parser they default to SUPPRESS so they never hide the
    top-level value."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=default(None), help="gateway URL (NOTIFY_URL)")
    common.add_argument("--api-key", default=default(None), help="API key (NOTIFY_API_KEY)")
    common.add_argument(
        "--timeout", type=float, default=default(10.0), help="seconds per HTTP attempt"
    )
    common.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON for scripts"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="notify",
        description="Send and follow notifications through the gateway.",
        parents=[_common(suppress=False)],
        epilog="exit status: 0 done, 1 refused or not delivered, 2 usage, 3 gateway unreachable",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common(suppress=True)

    send = sub.add_parser("send", parents=[common], help="send one notification")
    send.add_argument("--user", required=True, help="the user's id")
    send.add_argument("--template", required=True, help="template code, e.g. welcome")
    send.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="a template variable"
    )
    send.add_argument("--vars", help="template variables as a JSON object")
    send.add_argument("--channel", choices=["email", "push"], default="email")
    send.add_argument("--priority", default="normal", help="low, normal, high or 0-9")
    send.add_argument("--locale")
    send.add_argument("--request-id", help="your id for it (default: a new UUID)")
    send.add_argument("--idempotency-key", help="default: the request id")
    send.add_argument("--send-at", metavar="WHEN", help="deliver later: 10m, 2h, or ISO 8601")
    send.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=60.0,
        metavar="SECONDS",
        help="wait until delivered or failed (default 60 s)",
    )
    send.set_defaults(handler=cmd_send)

    status = sub.add_parser("status", parents=[common], help="a notification and its timeline")
    status.add_argument("ref", help="notification id or your request id")
    status.add_argument("--watch", action="store_true", help="follow the timeline until it ends")
    status.add_argument(
        "--for",
        dest="timeout_watch",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop watching after this long",
    )
    status.set_defaults(handler=cmd_status)

    listing = sub.add_parser("list", parents=[common], help="your notifications, newest first")
    listing.add_argument("--user", help="only this user's")
    listing.add_argument("--status", choices=[s.value for s in NotificationStatus])
    listing.add_argument("--channel", choices=["email", "push"])
    listing.add_argument("--since", metavar="WHEN", help="created after: 1h, 2d, or ISO 8601")
    listing.add_argument("--until", metavar="WHEN", help="created before: 1h, 2d, or ISO 8601")
    listing.add_argument(
        "--limit", type=int, default=50, help="at most this many (0: all; default 50)"
    )
    listing.set_defaults(handler=cmd_list)

    bulk = sub.add_parser(
        "bulk",
        parents=[common],
        help="one notification per CSV row",
        description=(
            "Columns: user_id, and optionally template_code, channel, request_id, priority, "
            "locale, send_at; every other column is a template variable. Rows without a "
            "request_id get one derived from their content, so a rerun sends nothing twice."
        ),
    )
    bulk.add_argument("file", help="CSV file with a header line")
    bulk.add_argument("--template", help="template code for rows without one")
    bulk.add_argument("--channel", choices=["email", "push"], default="email")
    bulk.add_argument("--concurrency", type=int, default=8, help="sends in flight (default 8)")
    bulk.add_argument("--one-by-one", action="store_true", help="never use the bulk endpoint")
    bulk.set_defaults(handler=cmd_bulk)

    cancel = sub.add_parser("cancel", parents=[common], help="cancel a scheduled notification")
    cancel.add_argument("ref", help="notification id or your request id")
    cancel.set_defaults(handler=cmd_cancel)

    dlq = sub.add_parser("dlq", help="operators: dead letters (admin API key)")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dlq_list = dlq_sub.add_parser("list", parents=[common], help="dead letters of a channel")
    dlq_list.add_argument("channel", choices=["email", "push"])
    dlq_list.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")
    dlq_show = dlq_sub.add_parser("show", parents=[common], help="one dead letter")
    dlq_show.add_argument("channel", choices=["email", "push"])
    dlq_show.add_argument("message_id")
    dlq_replay = dlq_sub.add_parser("replay", parents=[common], help="send back to work")
    dlq_replay.add_argument("channel", choices=["email", "push"])
    which = dlq_replay.add_mutually_exclusive_group()
    which.add_argument("--message-id", help="only this message")
    which.add_argument("--all", action="store_true", help="every dead letter of the channel")
    dlq_purge = dlq_sub.add_parser("purge", parents=[common], help="drop them all, for good")
    dlq_purge.add_argument("channel", choices=["email", "push"])
    dlq_purge.add_argument("--yes", action="store_true", help="yes, drop them")
    dlq.set_defaults(handler=cmd_dlq)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(json_mode=args.json)
    args.url = args.url or os.environ.get("NOTIFY_URL") or DEFAULT_URL
    args.api_key = args.api_key or os.environ.get("NOTIFY_API_KEY")
    if not args.api_key:
        out.note("error: no API key: set NOTIFY_API_KEY or pass --api-key")
        return EXIT_USAGE
    handler: Handler = args.handler
    try:
        with NotificationsClient(
            args.url, args.api_key, timeout=args.timeout, on_retry=out.retrying
        ) as client:
            return handler(args, client, out)
    except (UsageError, ValueError) as exc:  # ValueError: an argument the client refused
        out.note(f"error: {exc}")
        return EXIT_USAGE
    except EndpointNotFound as exc:
        exc.message = f"the gateway at {args.url} does not offer this yet ({exc.message})"
        out.error(exc)
        return EXIT_FAILED
    except ConnectionFailed as exc:
        exc.message += f"; is the gateway running at {args.url}?"
        out.error(exc)
        return EXIT_UNREACHABLE
    except NotificationsError as exc:
        out.error(exc)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
