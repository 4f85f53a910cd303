"""One-click unsubscribe links (RFC 8058): a token that names who stops getting what, signed.

The email worker puts `{PUBLIC_BASE_URL}/u/{token}` into `List-Unsubscribe` of every
non-transactional email; the gateway's `/u/{token}` checks the token and turns it into a
per-category opt-out in the user service. The link is the only credential (a mail client posts
it without any login), so the token carries an HMAC and nothing a reader could use:

    token = base64url(user id (16 bytes) | len | channel | len | category | HMAC-SHA256[:16])

The MAC covers a version label and every byte before it, under `UNSUBSCRIBE_SECRET`; it is
checked in constant time. The token reveals the user's id (an opaque UUID), the channel and
the category, never an address or a name. It does not expire: an unsubscribe link must keep
working for as long as the email sits in a mailbox; rotating the secret voids every link.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass

from shared.errors import NotFound

MAC_BYTES = 16
MAX_TOKEN_CHARS = 200
_LABEL = b"notifications/unsubscribe/v1\x00"
_MAX_PART = 32


class InvalidUnsubscribeToken(NotFound):
    """Malformed, tampered with, or signed with another secret: all answer the same."""

    status_code, code, message = (
        404,
        "invalid_unsubscribe_token",
        "this unsubscribe link is invalid",
    )


@dataclass(frozen=True)
class Unsubscribe:
    """What a valid token asks: `user_id` stops getting `category` on `channel`."""

    user_id: uuid.UUID
    channel: str
    category: str


def _secret(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _part(value: str) -> bytes:
    raw = value.encode("ascii")
    if not 0 < len(raw) <= _MAX_PART:
        raise ValueError(f"{value!r} is not a channel or category")
    return bytes([len(raw)]) + raw


def _mac(secret: str | bytes, payload: bytes) -> bytes:
    return hmac.new(_secret(secret), _LABEL + payload, hashlib.sha256).digest()[:MAC_BYTES]


def make_token(secret: str | bytes, request: Unsubscribe) -> str:
    """The URL-safe token for `request` (no padding, so it needs no escaping in a URL)."""
    payload = request.user_id.bytes + _part(request.channel) + _part(request.category)
    raw = payload + _mac(secret, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes:
    if not 0 < len(token) <= MAX_TOKEN_CHARS or not token.isascii():
        raise InvalidUnsubscribeToken()
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidUnsubscribeToken() from None


def _split(payload: bytes) -> tuple[str, str]:
    """channel and category from `len | channel | len | category`."""
    parts: list[str] = []
    rest = payload
    for _ in range(2):
        if not rest or not 0 < rest[0] <= _MAX_PART or len(rest) < 1 + rest[0]:
            raise InvalidUnsubscribeToken()
        parts.append(rest[1 : 1 + rest[0]].decode("ascii", errors="replace"))
        rest = rest[1 + rest[0] :]
    if rest:
        raise InvalidUnsubscribeToken()
    return parts[0], parts[1]


def read_token(secret: str | bytes, token: str) -> Unsubscribe:
    """The request a token signed with `secret` carries; `InvalidUnsubscribeToken` otherwise."""
    raw = _decode(token)
    if len(raw) < 16 + MAC_BYTES:
        raise InvalidUnsubscribeToken()
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    # Compare before looking inside: nothing about an unsigned payload is ever trusted.
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise InvalidUnsubscribeToken()
    channel, category = _split(payload[16:])
    return Unsubscribe(user_id=uuid.UUID(bytes=payload[:16]), channel=channel, category=category)


def unsubscribe_url(base_url: str, token: str) -> str:
    """`{base_url}/u/{token}`, the page and the one-click endpoint of the gateway."""
    return f"{base_url.rstrip('/')}/u/{token}"
