"""A local SMTP server that keeps what it receives, readable over a Mailpit-compatible API.

`python -m devtools.smtp_inbox` runs aiosmtpd on `inbox_smtp_port` (1025) and an HTTP
server on `inbox_http_port` (8025), in one event loop. Mail is kept in memory, newest first,
up to `--max-messages` (the oldest is dropped beyond that).

HTTP, the subset of Mailpit's API our tests and people use (same paths and field names, so a
real Mailpit can stand in): `GET /api/v1/messages`, `GET /api/v1/message/{id}` (also `latest`),
`GET /api/v1/message/{id}/headers`, `GET /api/v1/message/{id}/raw`, `DELETE /api/v1/messages`;
a plain HTML page at `/`; `GET /health`.

Faults, for tests and drills (`--fail-with 421|550|refuse` at start, or at runtime with
`POST /api/control/faults {"mode": "refuse"|"tempfail"|"permfail"|"drop_after_data"|"none",
"code"?: int}`): `refuse` closes the listener and every open session, so clients see connection
refused; `tempfail`/`permfail` answer each DATA with a 4xx/5xx (451/550 unless `code` says
otherwise); `drop_after_data` keeps each message and then drops the connection instead of
replying: the sender cannot know the message arrived (a lost final reply); `stall` holds each
DATA's reply until the mode changes (a sender killed meanwhile leaves nothing behind).
`POST /api/control/bounces {"address": ...}` makes the server refuse that recipient at RCPT with
`550 5.1.1` (no such mailbox), as a real server refuses an unknown user; `DELETE` clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import html
import logging
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses
from functools import cached_property
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from fastapi import APIRouter, Body, FastAPI, Query
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, Field

from shared.envelope import ok
from shared.errors import NotFound, ValidationFailed, install_error_handlers

logger = logging.getLogger("devtools.smtp_inbox")

FaultMode = Literal["none", "refuse", "tempfail", "permfail", "drop_after_data", "stall"]
DEFAULT_CODES = {"tempfail": 451, "permfail": 550}


@dataclass(frozen=True)
class StoredMessage:
    id: str
    created: datetime
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    # Parsed on first look, not on receipt: parsing costs more CPU than the SMTP exchange,
    # and under load most messages are never looked at (the benchmark counts it).
    @cached_property
    def parsed(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @cached_property
    def raw_headers(self) -> list[tuple[str, str]]:
        """Bodies come from the modern parser; headers from these, which never raise."""
        plain = email.message_from_bytes(self.raw, policy=email.policy.compat32)
        return [(k, str(v)) for k, v in plain.items()]

    def header(self, name: str) -> str:
        return self.all_headers(name)[0] if self.all_headers(name) else ""

    def all_headers(self, name: str) -> list[str]:
        # The stdlib's structured header parser raises on some malformed values (an odd
        # Message-ID, for one); the inbox shows whatever arrived instead of failing.
        wanted = name.lower()
        return [_decoded(v) for k, v in self.raw_headers if k.lower() == wanted]

    @property
    def subject(self) -> str:
        return self.header("Subject")

    def part(self, subtype: str) -> str:
        try:
            body = self.parsed.get_body(preferencelist=(subtype,))
            if body is None or body.get_content_subtype() != subtype:
                return ""
            content = body.get_content()
        except (LookupError, ValueError) as exc:
            return f"(unreadable {subtype} part: {exc})"
        return content if isinstance(content, str) else ""

    def summary(self) -> dict[str, Any]:
        """A message as Mailpit lists it."""
        text = self.part("plain") or re.sub(r"<[^>]+>", " ", self.part("html"))
        return {
            "ID": self.id,
            "MessageID": self.header("Message-ID").strip().strip("<>"),
            "Read": False,
            "From": _address(self.header("From")),
            "To": _addresses(self.all_headers("To")),
            "Cc": _addresses(self.all_headers("Cc")),
            "Bcc": [],
            "ReplyTo": _addresses(self.all_headers("Reply-To")),
            "Subject": self.subject,
            "Created": self.created.isoformat().replace("+00:00", "Z"),
            "Tags": [],
            "Size": len(self.raw),
            "Attachments": 0,
            "Snippet": " ".join(text.split())[:250],
        }

    def detail(self) -> dict[str, Any]:
        """A message as Mailpit shows one, plus its headers."""
        summary = self.summary()
        return {
            **{k: summary[k] for k in ("ID", "MessageID", "From", "To", "Cc", "Bcc", "ReplyTo")},
            "ReturnPath": self.mail_from,
            "Subject": self.subject,
            "Date": summary["Created"],
            "Tags": [],
            "Text": self.part("plain"),
            "HTML": self.part("html"),
            "Size": len(self.raw),
            "Inline": [],
            "Attachments": [],
            "Headers": self.headers(),
            "Recipients": list(self.rcpt_tos),
        }

    def headers(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for name, value in self.raw_headers:
            found.setdefault(name, []).append(_decoded(value))
        return found


def _decoded(value: str) -> str:
    """A header value with RFC 2047 words decoded and folding undone, or as it came."""
    unfolded = " ".join(value.split())
    try:
        return str(make_header(decode_header(unfolded)))
    except (LookupError, ValueError, UnicodeError):
        return unfolded


def _address(value: str) -> dict[str, str]:
    pairs = getaddresses([value]) if value else []
    name, address = pairs[0] if pairs else ("", "")
    return {"Name": name, "Address": address}


def _addresses(values: list[str]) -> list[dict[str, str]]:
    return [{"Name": n, "Address": a} for n, a in getaddresses(values) if a]


@dataclass
class Faults:
    mode: FaultMode = "none"
    code: int | None = None
    applied: int = 0
    bounces: set[str] = field(default_factory=set)
    """Recipients refused at RCPT with `550 5.1.1` (no such mailbox): a hard bounce."""
    unstalled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever the mode is not `stall`: what a stalled DATA waits for."""

    def __post_init__(self) -> None:
        self.unstalled.set()

    def reply(self) -> str | None:
        """The SMTP reply a DATA gets under the current fault, or None to accept it."""
        if self.mode not in DEFAULT_CODES:
            return None
        self.applied += 1
        code = self.code or DEFAULT_CODES[self.mode]
        text = "try again later" if code < 500 else "message rejected"
        return f"{code} {text} (inbox fault: {self.mode})"


@dataclass
class Inbox:
    """The mail kept in memory, newest first."""

    max_messages: int = 1000
    messages: deque[StoredMessage] = field(default_factory=deque)

    def add(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> StoredMessage:
        stored = StoredMessage(
            id=uuid.uuid4().hex,
            created=datetime.now(UTC),
            mail_from=mail_from,
            rcpt_tos=list(rcpt_tos),
            raw=raw,
        )
        self.messages.appendleft(stored)
        while len(self.messages) > self.max_messages:
            self.messages.pop()
        return stored

    def get(self, message_id: str) -> StoredMessage:
        if message_id == "latest" and self.messages:
            return self.messages[0]
        for stored in self.messages:
            if stored.id == message_id:
                return stored
        raise NotFound(f"no message {message_id}", code="message_not_found")

    def delete(self, ids: list[str] | None = None) -> None:
        if ids is None:
            self.messages.clear()
            return
        wanted = set(ids)
        self.messages = deque(m for m in self.messages if m.id not in wanted)


class _Handler:
    """aiosmtpd's handler: store each DATA unless a fault says otherwise."""

    def __init__(self, inbox: Inbox, faults: Faults) -> None:
        self.inbox = inbox
        self.faults = faults

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.faults.bounces:
            self.faults.applied += 1
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not self.faults.unstalled.is_set():
            # Hold the reply until the stall ends; a sender that dies meanwhile drops the
            # session, which cancels this and keeps nothing (the message never arrived).
            self.faults.applied += 1
            await self.faults.unstalled.wait()
        refusal = self.faults.reply()
        if refusal is not None:
            return refusal
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        stored = self.inbox.add(envelope.mail_from or "", list(envelope.rcpt_tos), raw)
        logger.info("received %s for %s", stored.id, ", ".join(envelope.rcpt_tos))
        if self.faults.mode == "drop_after_data" and server.transport is not None:
            self.faults.applied += 1
            server.transport.close()  # kept, but the 250 never reaches the sender
        return "250 OK: queued as " + stored.id


class SmtpInbox:
    """The SMTP side: a listener in the running event loop, closable to refuse connections."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 1025,
        max_messages: int = 1000,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.auth = auth
        self.inbox = Inbox(max_messages=max_messages)
        self.faults = Faults()
        self._handler = _Handler(self.inbox, self.faults)
        self._server: asyncio.Server | None = None
        self._sessions: set[SMTP] = set()
        self.connections_accepted = 0
        """SMTP sessions opened so far: tests read it to see connection reuse."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)

    async def stop(self) -> None:
        await self._close_listener()
        self._drop_sessions()

    async def __aenter__(self) -> SmtpInbox:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def set_fault(self, mode: FaultMode, code: int | None = None) -> None:
        self.faults.mode = mode
        self.faults.code = code
        if mode == "stall":
            self.faults.unstalled.clear()
        else:
            self.faults.unstalled.set()
        if mode == "refuse":
            await self._close_listener()
            self._drop_sessions()
        elif self._server is None:
            await self.start()
        logger.warning("fault mode is now %s%s", mode, f" ({code})" if code else "")

    def _protocol(self) -> SMTP:
        self.connections_accepted += 1
        smtp = _TrackedSMTP(
            self._handler,
            hostname="inbox.local",
            auth_required=self.auth is not None,
            auth_require_tls=False,
            authenticator=self._authenticate if self.auth else None,
            data_size_limit=10 * 1024 * 1024,
        )
        smtp.sessions = self._sessions
        return smtp

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.auth is not None
        valid = isinstance(data, LoginPassword) and (
            data.login.decode(),
            data.password.decode(),
        ) == (self.auth[0], self.auth[1])
        return AuthResult(success=valid, handled=False)

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _drop_sessions(self) -> None:
        for smtp in list(self._sessions):
            if smtp.transport is not None:
                smtp.transport.close()
        self._sessions.clear()


class _TrackedSMTP(SMTP):
    """Remembers its open sessions so `refuse` can cut them, as a dying server would."""

    sessions: set[SMTP]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.sessions.discard(self)
        super().connection_lost(error)


class FaultRequest(BaseModel):
    mode: FaultMode
    code: int | None = Field(default=None, ge=400, le=599)


class BounceRequest(BaseModel):
    address: str = Field(min_length=3, max_length=254)


class DeleteRequest(BaseModel):
    IDs: list[str] | None = None


def create_inbox_app(smtp: SmtpInbox) -> FastAPI:
    """The HTTP side over one `SmtpInbox`."""
    app = FastAPI(title="SMTP inbox", description=__doc__, redoc_url=None)
    install_error_handlers(app)
    app.include_router(_api_router(smtp))
    return app


def _api_router(smtp: SmtpInbox) -> APIRouter:
    router = APIRouter()
    inbox = smtp.inbox

    @router.get("/api/v1/messages")
    async def list_messages(
        start: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=5000)
    ) -> dict[str, Any]:
        page = list(inbox.messages)[start : start + limit]
        total = len(inbox.messages)
        return {
            "total": total,
            "unread": total,
            "count": len(page),
            "messages_count": total,
            "start": start,
            "tags": [],
            "messages": [m.summary() for m in page],
        }

    @router.get("/api/v1/message/{message_id}")
    async def get_message(message_id: str) -> dict[str, Any]:
        return inbox.get(message_id).detail()

    @router.get("/api/v1/message/{message_id}/headers")
    async def get_headers(message_id: str) -> dict[str, list[str]]:
        return inbox.get(message_id).headers()

    @router.get("/api/v1/message/{message_id}/raw")
    async def get_raw(message_id: str) -> PlainTextResponse:
        return PlainTextResponse(inbox.get(message_id).raw.decode(errors="replace"))

    @router.delete("/api/v1/messages")
    async def delete_messages(body: DeleteRequest | None = Body(None)) -> PlainTextResponse:
        inbox.delete(body.IDs if body is not None else None)
        return PlainTextResponse("ok")

    @router.post("/api/control/faults")
    async def set_fault(body: FaultRequest) -> dict[str, Any]:
        if body.code is not None and body.mode in DEFAULT_CODES:
            expected = 4 if body.mode == "tempfail" else 5
            if body.code // 100 != expected:
                raise ValidationFailed(f"a {body.mode} code must be {expected}xx")
        await smtp.set_fault(body.mode, body.code)
        return ok(_fault_state(smtp), message=f"fault mode {body.mode}")

    @router.get("/api/control/faults")
    async def get_fault() -> dict[str, Any]:
        return ok(_fault_state(smtp))

    @router.post("/api/control/bounces")
    async def add_bounce(body: BounceRequest) -> dict[str, Any]:
        smtp.faults.bounces.add(body.address.lower())
        return ok(sorted(smtp.faults.bounces), message="address bounces from now on")

    @router.delete("/api/control/bounces")
    async def clear_bounces() -> dict[str, Any]:
        smtp.faults.bounces.clear()
        return ok([], message="no address bounces")

    @router.get("/health")
    async def health() -> dict[str, Any]:
        return ok(
            {"service": "smtp_inbox", "status": "ok", "messages": len(inbox.messages)},
            message="healthy",
        )

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_render_page(inbox))

    return router


def _fault_state(smtp: SmtpInbox) -> dict[str, Any]:
    return {"mode": smtp.faults.mode, "code": smtp.faults.code, "applied": smtp.faults.applied}


def _render_page(inbox: Inbox) -> str:
    rows = "\n".join(
        "<tr><td>{created}</td><td>{sender}</td><td>{to}</td>"
        '<td><a href="/api/v1/message/{id}">{subject}</a></td><td>{snippet}</td></tr>'.format(
            created=html.escape(s["Created"]),
            sender=html.escape(s["From"]["Address"]),
            to=html.escape(", ".join(a["Address"] for a in s["To"])),
            id=html.escape(s["ID"]),
            subject=html.escape(s["Subject"] or "(no subject)"),
            snippet=html.escape(s["Snippet"][:120]),
        )
        for s in (m.summary() for m in inbox.messages)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Inbox</title>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 8px;border-bottom:1px solid #ddd;"
        "text-align:left}</style></head><body>"
        f"<h1>Inbox ({len(inbox.messages)})</h1>"
        "<table><tr><th>Received</th><th>From</th><th>To</th><th>Subject</th><th>Snippet</th></tr>"
        f"{rows}</table></body></html>"
    )


def parse_fail_with(value: str) -> tuple[FaultMode, int | None]:
    """`--fail-with`: `refuse`, or an SMTP code (4xx: tempfail, 5xx: permfail)."""
    if value == "refuse":
        return "refuse", None
    if value.isdigit() and len(value) == 3 and value[0] in "45":
        return ("tempfail" if value[0] == "4" else "permfail"), int(value)
    raise argparse.ArgumentTypeError("use refuse, a 4xx or a 5xx code")


async def serve(
    *,
    host: str,
    smtp_port: int,
    http_port: int,
    max_messages: int,
    fail_with: tuple[FaultMode, int | None] | None,
    auth: tuple[str, str] | None = None,
) -> None:
    import uvicorn

    smtp = SmtpInbox(host=host, port=smtp_port, max_messages=max_messages, auth=auth)
    await smtp.start()
    if fail_with is not None:
        await smtp.set_fault(*fail_with)
    config = uvicorn.Config(
        create_inbox_app(smtp), host=host, port=http_port, log_config=None, access_log=False
    )
    logger.info("SMTP on %s:%d, HTTP on http://%s:%d", host, smtp_port, host, http_port)
    try:
        await uvicorn.Server(config).serve()
    finally:
        await smtp.stop()


def main(argv: list[str] | None = None) -> None:
    from shared.logging import setup_logging
    from shared.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m devtools.smtp_inbox")
    parser.add_argument("--host", default=settings.bind_host)
    parser.add_argument("--smtp-port", type=int, default=settings.inbox_smtp_port)
    parser.add_argument("--http-port", type=int, default=settings.inbox_http_port)
    parser.add_argument("--max-messages", type=int, default=1000)
    parser.add_argument("--fail-with", type=parse_fail_with, default=None)
    parser.add_argument("--auth", default=None, help="require AUTH as user:password")
    args = parser.parse_args(argv)
    setup_logging("smtp_inbox", settings.log_level, settings.log_format)
    auth = None
    if args.auth:
        user, _, password = args.auth.partition(":")
        auth = (user, password)
    asyncio.run(
        serve(
            host=args.host,
            smtp_port=args.smtp_port,
            http_port=args.http_port,
            max_messages=args.max_messages,
            fail_with=args.fail_with,
            auth=auth,
        )
    )


if __name__ == "__main__":
    main()
