"""The user's wishes at delivery time, not only at acceptance.

A notification may wait (quiet hours, a schedule, retries) while the user changes their
preferences, address or devices. Before sending, the worker applies the current contact: a
channel turned off, or the template's category turned off for that channel (an unsubscribe
link), is `skipped` (`opted_out`), a channel with nowhere to go is `skipped`
(`no_address` / `no_devices`), and otherwise the message goes to the current address or devices.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.contracts import Contact
from shared.messaging.message import Channel, DeviceTarget, NotificationMessage, Recipient


@dataclass(frozen=True)
class Skip:
    reason: str
    detail: str


def apply_policy(message: NotificationMessage, contact: Contact) -> NotificationMessage | Skip:
    """The message to send now (with the current recipient), or why it is not sent."""
    preferences = contact.preferences
    channel, category = message.notification_type.value, message.template.category
    if not preferences.allows(channel, category):
        return Skip("opted_out", f"the user turned off {category} {channel}")
    if message.notification_type is Channel.EMAIL:
        if not preferences.email:
            return Skip("opted_out", "the user turned off email")
        if not contact.email:
            return Skip("no_address", "the user has no email address")
        recipient = Recipient(name=contact.name, email=contact.email)
    else:
        if not preferences.push:
            return Skip("opted_out", "the user turned off push")
        if not contact.devices:
            return Skip("no_devices", "the user has no registered device")
        recipient = Recipient(
            name=contact.name,
            devices=[DeviceTarget(token=d.token, platform=d.platform) for d in contact.devices],
        )
    if recipient == message.recipient:
        return message
    return message.model_copy(update={"recipient": recipient})
