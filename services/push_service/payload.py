"""Build the FCM v1 message for one device from rendered push content.

The common `notification` block carries title, body and image for every platform; the
platform block adds what only that platform understands (Android priority and channel, the
APNs `aps` alert and `mutable-content` so an image can be attached, Web Push's click link and
urgency). `data` values must be strings in FCM, so anything else is JSON-encoded.

Every platform block carries a collapse key derived from the notification id (Android
`notification.tag`, APNs `apns-collapse-id`, Web Push `Topic`): if a copy is ever sent twice
(a worker died between FCM's acceptance and recording it), the second replaces the first on the
device instead of showing beside it. A notification that expires passes its remaining time on
(Android `ttl`, APNs `apns-expiration`, Web Push `TTL`), so FCM drops it rather than deliver it
late.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HIGH_PRIORITY_FROM = 7
"""Message priority (0-9) from which a push is sent as high priority / urgent."""


@dataclass(frozen=True)
class PushContent:
    title: str
    body: str
    image: str | None = None
    link: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)


def content_from_rendered(rendered: Mapping[str, Any], variables: Mapping[str, Any]) -> PushContent:
    """Rendered push fields (+ the message's `link` variable) as push content.

    `rendered` is what `shared.messaging.delivery.render_message` answers: the template's data
    map already folded into `data`. The link lands in `data["link"]` too, so an app that only
    reads data still finds it.
    """
    nested = rendered
    data = {k: v for k, v in (nested.get("data") or {}).items() if v is not None}
    link = variables.get("link")
    link = str(link) if link else None
    if link and "link" not in data:
        data["link"] = link
    return PushContent(
        title=nested.get("title") or "",
        body=nested.get("body") or "",
        image=nested.get("image_url") or None,
        link=link,
        data=data,
    )


def build_message(
    content: PushContent,
    *,
    platform: str,
    priority: int,
    notification_id: str,
    expires_in_seconds: float | None = None,
) -> dict[str, Any]:
    """The FCM v1 `message` object without its `token` (the client adds it per device)."""
    high = priority >= HIGH_PRIORITY_FROM
    ttl = max(0, int(expires_in_seconds)) if expires_in_seconds is not None else None
    notification: dict[str, str] = {"title": content.title, "body": content.body}
    if content.image:
        notification["image"] = content.image
    data = {k: _as_string(v) for k, v in content.data.items()}
    data.setdefault("notification_id", notification_id)
    message: dict[str, Any] = {"notification": notification, "data": data}
    if platform == "android":
        message["android"] = {
            "priority": "HIGH" if high else "NORMAL",
            "notification": {
                "channel_id": "default",
                "tag": notification_id,
                **({"image": content.image} if content.image else {}),
            },
            **({"ttl": f"{ttl}s"} if ttl is not None else {}),
        }
    elif platform == "ios":
        aps: dict[str, Any] = {
            "alert": {"title": content.title, "body": content.body},
            "sound": "default",
        }
        if content.image:
            aps["mutable-content"] = 1
        headers = {"apns-priority": "10" if high else "5", "apns-collapse-id": notification_id}
        if ttl is not None:
            headers["apns-expiration"] = str(int(time.time()) + ttl)
        apns: dict[str, Any] = {"headers": headers, "payload": {"aps": aps}}
        if content.image:
            apns["fcm_options"] = {"image": content.image}
        message["apns"] = apns
    elif platform == "web":
        # Topic: at most 32 characters of the URL-safe base64 alphabet; a uuid's hex fits.
        web_headers = {
            "Urgency": "high" if high else "normal",
            "Topic": notification_id.replace("-", "")[:32],
        }
        if ttl is not None:
            web_headers["TTL"] = str(ttl)
        webpush: dict[str, Any] = {
            "headers": web_headers,
            "notification": {"title": content.title, "body": content.body}
            | ({"image": content.image} if content.image else {}),
        }
        # FCM accepts only HTTPS click links for Web Push.
        if content.link and content.link.startswith("https://"):
            webpush["fcm_options"] = {"link": content.link}
        message["webpush"] = webpush
    return message


def _as_string(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
