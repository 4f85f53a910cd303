"""What the command prints: short lines for people, one JSON document for scripts (`--json`),
errors and retries on stderr, and a progress bar when stderr is a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from pydantic import BaseModel

from notifications_client.errors import NotificationsError
from notifications_client.models import HistoryEntry, NotificationDetail
from notifications_client.retry import RetryEvent


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


class Output:
    def __init__(
        self, json_mode: bool, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.json_mode = json_mode
        # Looked up now, not at import: a caller (or a test) may have replaced them.
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def document(self, value: Any) -> None:
        """The one JSON document of a `--json` run."""
        print(json.dumps(jsonable(value), indent=2), file=self.stdout, flush=True)

    def json_line(self, value: Any) -> None:
        """One event of a stream (`status --watch --json`)."""
        print(json.dumps(jsonable(value)), file=self.stdout, flush=True)

    def line(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def note(self, text: str) -> None:
        print(f"notify: {text}", file=self.stderr, flush=True)

    def error(self, exc: NotificationsError) -> None:
        if self.json_mode:
            self.document(exc.to_dict())
        self.note(f"error: {exc}")

    def retrying(self, event: RetryEvent) -> None:
        print(retry_text(event), file=self.stderr, flush=True)


def retry_text(event: RetryEvent) -> str:
    return (
        f"notify: attempt {event.attempt} failed ({event.error.code}); "
        f"retrying in {event.delay:.1f} s"
    )


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def timeline_line(entry: HistoryEntry) -> str:
    return f"  {entry.at.isoformat(timespec='milliseconds')}  {entry.status!s:<10}  {entry.detail or ''}".rstrip()


def describe(detail: NotificationDetail) -> list[str]:
    version = f" v{detail.template_version}" if detail.template_version is not None else ""
    lines = [
        f"notification {detail.notification_id}",
        f"  status      {detail.status}"
        + (f" ({detail.status_reason})" if detail.status_reason else ""),
        f"  channel     {detail.notification_type}",
        f"  template    {detail.template_code}{version}",
        f"  user        {detail.user_id}",
        f"  request id  {detail.request_id or '-'}",
        f"  attempts    {detail.attempts}",
    ]
    if detail.last_error:
        lines.append(f"  last error  {detail.last_error}")
    if detail.scheduled_for:
        lines.append(f"  scheduled   {detail.scheduled_for.isoformat()}")
    lines.append("timeline")
    lines += [timeline_line(entry) for entry in detail.history]
    return lines


class Progress:
    """A one-line bar on stderr, redrawn in place; silent when stderr is not a terminal."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.stream = stream
        self.enabled = stream.isatty()

    def advance(self, ok: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        if self.enabled:
            self.stream.write("\r" + self.render())
            self.stream.flush()

    def message(self, text: str) -> None:
        """A line above the bar (a retry, say), which is then drawn again below it."""
        if not self.enabled:
            print(text, file=self.stream, flush=True)
            return
        self.stream.write(f"\r\x1b[K{text}\n{self.render()}")
        self.stream.flush()

    def render(self) -> str:
        share = self.done / self.total if self.total else 1.0
        filled = round(share * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        return f"[{bar}] {self.done}/{self.total} {share:4.0%}  failed {self.failed}"

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
