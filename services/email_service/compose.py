"""Building the outgoing message: multipart text + HTML, headers that no variable can inject.

The compat32 `MIMEMultipart` path is used on purpose: it costs about a third of the modern
`EmailMessage` API per message (docs/measurements.md), and this is the worker's hot path. compat32 does not
police header values, so every value that becomes a header is checked here first: CR, LF, NUL
and other control characters, and RFC 2047 encoded-words (`=?`), are refused. The last one is
CVE-2024-6923: this Python lets an encoded newline become a real one when the message is
serialised. A refused value is the message's fault, so the caller fails it permanently.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_TAGS = re.compile(r"<[^>]+>")


class UnsafeHeader(ValueError):
    """A value that would become a header contains something that could inject one."""


class InvalidAddress(ValueError):
    """Not an address we will hand to an SMTP server."""


def safe_header(value: str, field: str) -> str:
    """`value` if it can go into a header as is; raise `UnsafeHeader` otherwise."""
    if _CONTROL.search(value):
        raise UnsafeHeader(f"{field} contains a control character")
    if "=?" in value:
        raise UnsafeHeader(f"{field} contains an encoded-word")
    return value


def checked_address(address: str, field: str = "address") -> str:
    """A plain ASCII addr-spec (no display name, no comments), at most 254 characters."""
    safe_header(address, field)
    if len(address) > 254 or not _ADDRESS.match(address) or ".." in address:
        raise InvalidAddress(f"{field} is not a valid email address")
    return address


def _header_text(value: str) -> str | Header:
    """ASCII stays a plain string; anything else becomes a UTF-8 encoded-word made by us."""
    return value if value.isascii() else Header(value, "utf-8")


def _display(name: str | None, address: str, field: str) -> str:
    if not name:
        return address
    safe_header(name, f"{field} name")
    return formataddr((name, address), charset="utf-8")


def message_id_for(notification_id: uuid.UUID, from_address: str) -> str:
    """The same id for every attempt of one notification, so receivers can drop duplicates."""
    domain = from_address.rpartition("@")[2] or "localhost"
    return f"<{notification_id}@{domain}>"


def html_to_text(html: str) -> str:
    return " ".join(_TAGS.sub(" ", html).split())


@dataclass(frozen=True)
class OutgoingEmail:
    from_address: str
    from_name: str | None
    to_address: str
    to_name: str | None
    subject: str
    text: str | None
    html: str | None
    message_id: str
    list_unsubscribe: str | None = None
    """The `List-Unsubscribe` value (`<https://...>, <mailto:...>`); with it goes
    `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058)."""
    headers: tuple[tuple[str, str], ...] = ()


def build_message(email: OutgoingEmail) -> MIMEMultipart | MIMENonMultipart:
    """The MIME message: multipart/alternative when there is HTML, text/plain otherwise.

    Raises `UnsafeHeader` or `InvalidAddress` for values that cannot be sent safely.
    """
    from_address = checked_address(email.from_address, "from address")
    to_address = checked_address(email.to_address, "recipient")
    subject = safe_header(email.subject, "subject")
    text = email.text if email.text is not None else html_to_text(email.html or "")

    message: MIMEMultipart | MIMENonMultipart
    if email.html:
        message = MIMEMultipart("alternative")
        message.attach(MIMEText(text, "plain", "utf-8"))
        message.attach(MIMEText(email.html, "html", "utf-8"))
    else:
        message = MIMEText(text, "plain", "utf-8")
    message["Subject"] = _header_text(subject)  # type: ignore[assignment]
    message["From"] = _display(email.from_name, from_address, "from")
    message["To"] = _display(email.to_name, to_address, "recipient")
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = safe_header(email.message_id, "message id")
    if email.list_unsubscribe:
        message["List-Unsubscribe"] = safe_header(email.list_unsubscribe, "list-unsubscribe")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in email.headers:
        message[safe_header(name, "header name")] = safe_header(value, name)
    return message
