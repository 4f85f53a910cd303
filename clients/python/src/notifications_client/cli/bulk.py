"""`notify bulk FILE.csv`: one notification per row, safe to run again.

Columns: `user_id` (required), `template_code`, `channel`, `request_id`, `priority`, `locale`,
`send_at` (each optional, some defaulting to a flag); every other column is a template
variable, as in a mail merge. A row without a `request_id` gets one derived from its content
(and which copy of that content it is), so running the same file again is answered from the
gateway's idempotency records instead of sending twice.

When the gateway offers `POST /v1/notifications/bulk`, rows go in chunks through it; an older
gateway answers 404 and the rows are sent one by one, a bounded number at a time.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from notifications_client.async_client import AsyncNotificationsClient
from notifications_client.cli.output import Progress
from notifications_client.cli.when import parse_moment
from notifications_client.errors import EndpointNotFound, NotificationsError
from notifications_client.models import BulkItemResult, SendRequest

CHUNK_ROWS = 500  # rows per bulk request; the endpoint takes up to 1,000
# The gateway refuses bodies over 64 KiB (MAX_BODY_BYTES) before routing, so a chunk stays
# under it: larger, an older gateway would answer 413 instead of the 404 that says "no bulk".
CHUNK_BYTES = 60_000
_ALIASES = {
    "user": "user_id",
    "template": "template_code",
    "notification_type": "channel",
}
_FIELDS = {"user_id", "template_code", "channel", "request_id", "priority", "locale", "send_at"}


@dataclass(frozen=True)
class Row:
    number: int  # line in the file, counting the header as line 1
    request: SendRequest | None
    problem: str | None = None


@dataclass
class RowResult:
    row: int
    request_id: str | None
    notification_id: str | None = None
    status: str | None = None
    replayed: bool = False
    error: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def derived_request_id(content: str, copy: int) -> str:
    """Stable across runs: the row's content, and which copy of that content it is (so two
    identical rows stay two notifications, and neither is sent again by a rerun)."""
    digest = hashlib.sha256(f"{content}#{copy}".encode()).hexdigest()
    return f"csv-{digest[:40]}"


def read_rows(path: Path, *, template: str | None, channel: str) -> list[Row]:
    rows: list[Row] = []
    copies: Counter[str] = Counter()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            return rows
        for number, raw in enumerate(reader, start=2):
            fields: dict[str, Any] = {}
            variables: dict[str, str] = {}
            for name, value in raw.items():
                if name is None:
                    continue  # cells beyond the header: ignored
                key = _ALIASES.get(name.strip().lower(), name.strip().lower())
                value = (value or "").strip()
                if not value:
                    continue
                if key in _FIELDS:
                    fields[key] = value
                else:
                    variables[name.strip()] = value
            rows.append(_row(number, fields, variables, template, channel, copies))
    return rows


def _row(
    number: int,
    fields: dict[str, Any],
    variables: dict[str, str],
    template: str | None,
    channel: str,
    copies: Counter[str],
) -> Row:
    fields.setdefault("channel", channel)
    if template is not None:
        fields.setdefault("template_code", template)
    missing = [name for name in ("user_id", "template_code") if name not in fields]
    if missing:
        return Row(number, None, f"missing {' and '.join(missing)}")
    priority = fields.get("priority", "normal")
    if isinstance(priority, str) and priority.isdigit():
        fields["priority"] = int(priority)
    if "request_id" not in fields:
        # From the cells as written (a relative `send_at` included), so a rerun derives the same.
        content = json.dumps({**fields, "variables": variables}, sort_keys=True)
        copies[content] += 1
        fields["request_id"] = derived_request_id(content, copies[content])
    try:
        if "send_at" in fields:
            fields["send_at"] = parse_moment(fields["send_at"], ago=False)
        request = SendRequest(
            user_id=fields["user_id"],
            template_code=fields["template_code"],
            notification_type=fields["channel"],
            variables=variables,
            request_id=fields["request_id"],
            priority=fields.get("priority", "normal"),
            locale=fields.get("locale"),
            send_at=fields.get("send_at"),
        )
    except (ValidationError, ValueError) as exc:
        return Row(number, None, _short(exc))
    return Row(number, request)


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}"
    return str(exc)


async def send_rows(
    client: AsyncNotificationsClient,
    rows: Sequence[Row],
    *,
    concurrency: int,
    progress: Progress,
    use_bulk: bool = True,
) -> list[RowResult]:
    results: dict[int, RowResult] = {}
    ready: list[tuple[Row, SendRequest]] = []
    for row in rows:
        if row.request is None:
            results[row.number] = RowResult(
                row.number, None, error="invalid_row", message=row.problem
            )
            progress.advance(ok=False)
        else:
            ready.append((row, row.request))
    if use_bulk and ready:
        try:
            await _through_bulk(client, ready, results, progress)
            ready = []
        except EndpointNotFound:
            pass  # this gateway predates bulk sends: one by one below
    if ready:
        await _one_by_one(client, ready, results, concurrency, progress)
    return [results[row.number] for row in rows]


def chunks(
    ready: list[tuple[Row, SendRequest]],
) -> Iterator[list[tuple[Row, SendRequest]]]:
    """Consecutive rows, at most `CHUNK_ROWS` and about `CHUNK_BYTES` of JSON each."""
    chunk: list[tuple[Row, SendRequest]] = []
    size = 0
    for row, request in ready:
        length = len(json.dumps(request.body())) + 2
        if chunk and (len(chunk) == CHUNK_ROWS or size + length > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((row, request))
        size += length
    if chunk:
        yield chunk


async def _through_bulk(
    client: AsyncNotificationsClient,
    ready: list[tuple[Row, SendRequest]],
    results: dict[int, RowResult],
    progress: Progress,
) -> None:
    for number, chunk in enumerate(chunks(ready)):
        requests = [request for _, request in chunk]
        # A rerun of the same chunk replays as a whole; each item also has its request_id.
        key = (
            "bulk-"
            + hashlib.sha256("\n".join(r.request_id or "" for r in requests).encode()).hexdigest()[
                :40
            ]
        )
        items: list[BulkItemResult] | None = None
        failure: NotificationsError | None = None
        try:
            items = await client.send_bulk(requests, idempotency_key=key)
        except NotificationsError as exc:
            if number == 0 and isinstance(exc, EndpointNotFound):
                raise
            failure = exc  # the whole chunk failed: every row in it says why
        for index, (row, request) in enumerate(chunk):
            if items is not None and index < len(items):
                item = items[index]
                result = RowResult(
                    row.number,
                    request.request_id,
                    notification_id=str(item.notification_id) if item.notification_id else None,
                    status=str(item.status) if item.status else None,
                    error=item.error,
                    message=item.message,
                )
                if not item.ok and result.error is None:
                    result.error = "no_result"
            else:
                result = RowResult(
                    row.number,
                    request.request_id,
                    error=failure.code if failure else "no_result",
                    message=failure.message if failure else "the bulk answer has no result for it",
                )
            results[row.number] = result
            progress.advance(result.ok)


async def _one_by_one(
    client: AsyncNotificationsClient,
    ready: list[tuple[Row, SendRequest]],
    results: dict[int, RowResult],
    concurrency: int,
    progress: Progress,
) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def send(row: Row, request: SendRequest) -> None:
        async with gate:
            try:
                accepted = await client.send_request(request)
            except NotificationsError as exc:
                result = RowResult(
                    row.number, request.request_id, error=exc.code, message=exc.message
                )
            else:
                result = RowResult(
                    row.number,
                    request.request_id,
                    notification_id=str(accepted.notification_id),
                    status=str(accepted.status),
                    replayed=accepted.replayed,
                )
        results[row.number] = result
        progress.advance(result.ok)

    await asyncio.gather(*(send(row, request) for row, request in ready))
