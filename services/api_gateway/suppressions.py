"""A bounce or complaint reported for an email: its address goes on the suppression list.

Providers (and the SMTP relay's own bounce processing) report through the status callback
`POST /api/v1/email/status/` with `bounced` or `complained`. The address the notification was
accepted for is suppressed (`shared/suppressions.py`), so every later send to it ends `skipped`
with reason `suppressed`; a notification still open ends `failed` (a bounce) and one already
`delivered` stays so, since the mail did leave: the report is about the address from now on.
"""

from __future__ import annotations

import uuid

from services.api_gateway.store import NotificationStore
from shared.notification_status import OPEN, TransitionResult
from shared.notification_status import NotificationStatus as S
from shared.suppressions import SuppressionList, SuppressionReason

REPORTS = {"bounced": SuppressionReason.HARD_BOUNCE, "complained": SuppressionReason.COMPLAINT}


async def report_bounce(
    store: NotificationStore,
    suppressions: SuppressionList,
    notification_id: uuid.UUID,
    report: str,
    *,
    detail: str,
    error: str | None,
) -> tuple[TransitionResult, bool]:
    """Record a `bounced`/`complained` report; (the status after it, whether an address was
    suppressed)."""
    result = await store.record_callback(
        notification_id,
        "email",
        S.FAILED if report == "bounced" else None,
        detail=detail,
        error=error or f"reported {report}",
        allowed_from=OPEN,
    )
    address = await store.recipient_email(notification_id)
    if address is None:
        return result, False
    await suppressions.add(
        address, REPORTS[report], detail=error or detail, notification_id=notification_id
    )
    return result, True
