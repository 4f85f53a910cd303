"""HTTP routes of the gateway: translate requests to the use cases and back.

Success bodies are serialised with orjson straight into a `Response` (the send route is the
hot path of the whole system); the response models below only document them in OpenAPI.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Path, Request, Response

from services.api_gateway.api_keys import ApiKey
from services.api_gateway.deps import (
    CurrentApiKey,
    RateLimitsDep,
    SendServiceDep,
    StoreDep,
    SuppressionsDep,
    enforce_rate_limit,
)
from services.api_gateway.idempotency import fingerprint, parse_idempotency_key
from services.api_gateway.rate_limit import RateLimits
from services.api_gateway.schemas import (
    Accepted,
    AcceptedGroup,
    CallbackResult,
    Group,
    LegacySendRequest,
    RequestId,
    SendCommand,
    SendRequest,
    StatusCallback,
    StatusDetail,
    StatusSummary,
)
from services.api_gateway.send import SendResult, SendService
from services.api_gateway.suppressions import REPORTS, report_bounce
from shared.auth import InternalKey
from shared.envelope import Envelope, ok
from shared.errors import BadRequest, NotFound, ValidationFailed, error_responses
from shared.messaging.message import Channel
from shared.notification_status import NotificationStatus
from shared.pagination import PaginationQuery, page_of

router = APIRouter()

IDEMPOTENCY_DOC = (
    "Makes the send safe to retry. Defaults to the body's `request_id`. Scoped to your API key "
    "and kept for 24 hours: the same key with the same body replays the first response "
    "(header `Idempotency-Replayed: true`, nothing is sent twice); with a different body it "
    "is a 422 `idempotency_key_reused`; while the first request is still running, a 409 "
    "`request_in_progress` with `Retry-After`. 1-255 visible ASCII characters, optionally "
    "quoted."
)
IdempotencyKeyHeader = Annotated[
    str | None, Header(alias="Idempotency-Key", description=IDEMPOTENCY_DOC)
]

_WHY = {
    400: "malformed JSON or `Idempotency-Key`",
    401: "`invalid_api_key`",
    404: "`user_not_found` or `template_not_found`",
    409: "`request_in_progress` (retry after `Retry-After`)",
    413: "body over 64 KiB",
    422: "`validation_error`, `missing_variables`, `unsafe_link`, `idempotency_key_reused`, "
    "`template_request_refused`, `send_at_in_past`, `send_at_too_far` or `send_at_after_expiry`",
    429: "`rate_limited` (see `Retry-After`)",
    503: "`dependency_unavailable` (see `Retry-After`)",
}
_READ_WHY = {**_WHY, 404: "`notification_not_found`", 422: "`validation_error`"}
_CANCEL_WHY = {
    **_READ_WHY,
    409: "`not_cancellable`: a worker has claimed it, or it has ended",
}
_CALLBACK_WHY = {
    400: "malformed JSON",
    401: "`invalid_internal_key`",
    404: "`notification_not_found`",
    413: _WHY[413],
    422: "`validation_error` or `channel_mismatch`",
}
_READ_ERRORS = error_responses(_READ_WHY, 401, 404, 429)
_CANCEL_ERRORS = error_responses(_CANCEL_WHY, 401, 404, 409, 429)
_CALLBACK_ERRORS = error_responses(_CALLBACK_WHY, 400, 401, 404, 413)
_SEND_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "model": Envelope[Accepted | AcceptedGroup],
        "description": "accepted (queued, scheduled or skipped); with `channels`, the group",
    },
    **error_responses(_WHY, *_WHY),
}


def json_response(
    body: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status_code, media_type="application/json", headers=headers
    )


def _result_response(result: SendResult) -> Response:
    headers = {"Idempotency-Replayed": "true"} if result.replayed else None
    return json_response(result.body, result.status_code, headers)


async def _send(
    request: Request,
    sends: SendService,
    limits: RateLimits,
    api_key: ApiKey,
    command: SendCommand,
    idempotency_key: str | None,
) -> Response:
    key = parse_idempotency_key(idempotency_key)
    await enforce_rate_limit(request, limits, api_key, scope="send", user_id=command.user_id)
    try:
        raw = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:  # valid for Python's parser, not for strict JSON
        raise BadRequest("the request body is not valid JSON", code="invalid_json") from exc
    result = await sends.send(api_key, command, idempotency_key=key, fingerprint=fingerprint(raw))
    return _result_response(result)


@router.post(
    "/v1/notifications/send",
    status_code=202,
    tags=["notifications"],
    summary="Send a notification",
    responses=_SEND_RESPONSES,
    response_class=Response,
)
async def send_notification(
    request: Request,
    body: SendRequest,
    sends: SendServiceDep,
    limits: RateLimitsDep,
    api_key: CurrentApiKey,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Validate, rate-limit, deduplicate, enrich and accept one notification.

    A 202 means the notification is durable: it is published at once, or kept in the
    transactional outbox until the broker takes it. A channel the user turned off (or a push
    to a user without a device) is accepted as `skipped`; quiet hours make it `scheduled`, and
    so does a `send_at`. With `channels`, one notification per channel is accepted in the same
    statement and the 202 is the group (`group_id`, `notifications`).
    """
    return await _send(request, sends, limits, api_key, body.to_command(), idempotency_key)


@router.post(
    "/api/v1/notifications/",
    status_code=202,
    tags=["notifications"],
    summary="Send a notification (legacy body)",
    responses=_SEND_RESPONSES,
    response_class=Response,
)
@router.post("/api/v1/notifications", include_in_schema=False, status_code=202)
async def send_notification_legacy(
    request: Request,
    body: LegacySendRequest,
    sends: SendServiceDep,
    limits: RateLimitsDep,
    api_key: CurrentApiKey,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """The task statement's body (`priority` an integer, `variables` = `{name, link, meta?}`),
    handled exactly like `POST /v1/notifications/send`."""
    return await _send(request, sends, limits, api_key, body.to_command(), idempotency_key)


@router.get(
    "/v1/notifications/{ref}/status",
    tags=["notifications"],
    summary="A notification's status and history",
    responses={200: {"model": Envelope[StatusDetail]}, **_READ_ERRORS},
    response_class=Response,
)
async def notification_status(
    request: Request,
    store: StoreDep,
    limits: RateLimitsDep,
    api_key: CurrentApiKey,
    # Checked like a `request_id` (no NUL, which PostgreSQL text cannot hold): 422, not 500.
    ref: Annotated[RequestId, Path(description="The notification id or your `request_id`.")],
) -> Response:
    await enforce_rate_limit(request, limits, api_key, scope="read", user_id=None)
    found = await store.find(api_key.id, ref)
    if found is None:
        raise NotFound("no notification with this id or request id", code="notification_not_found")
    return json_response(ok(found))


@router.get(
    "/v1/notifications/groups/{group_id}",
    tags=["notifications"],
    summary="The notifications of one multi-channel send",
    responses={
        200: {"model": Envelope[Group]},
        **error_responses({**_READ_WHY, 404: "`group_not_found`"}, 401, 404, 429),
    },
    response_class=Response,
)
async def notification_group(
    request: Request,
    store: StoreDep,
    limits: RateLimitsDep,
    api_key: CurrentApiKey,
    group_id: Annotated[uuid.UUID, Path(description="The `group_id` of the send's 202.")],
) -> Response:
    await enforce_rate_limit(request, limits, api_key, scope="read", user_id=None)
    return json_response(ok(await store.group(api_key.id, group_id)))


@router.delete(
    "/v1/notifications/{ref}",
    tags=["notifications"],
    summary="Cancel a scheduled or queued notification",
    responses={
        200: {
            "model": Envelope[StatusDetail],
            "description": "cancelled (or already cancelled): the status and history",
        },
        **_CANCEL_ERRORS,
    },
    response_class=Response,
)
async def cancel_notification(
    request: Request,
    store: StoreDep,
    limits: RateLimitsDep,
    api_key: CurrentApiKey,
    ref: Annotated[RequestId, Path(description="The notification id or your `request_id`.")],
) -> Response:
    """A `scheduled` or `queued` notification becomes `cancelled` and is never sent. Once a
    worker has claimed it (`processing`) or it has ended, 409 `not_cancellable`: it may already
    be at the provider. Cancelling a cancelled notification answers the same again."""
    await enforce_rate_limit(request, limits, api_key, scope="send", user_id=None)
    return json_response(ok(await store.cancel(api_key.id, ref), message="notification cancelled"))


@router.get(
    "/v1/notifications",
    tags=["notifications"],
    summary="Your notifications, newest first",
    responses={200: {"model": Envelope[list[StatusSummary]]}, **_READ_ERRORS},
    response_class=Response,
)
async def list_notifications(
    request: Request,
    store: StoreDep,
    limits: RateLimitsDep,
    api_key: CurrentApiKey,
    pagination: PaginationQuery,
    user_id: uuid.UUID | None = None,
    status: NotificationStatus | None = None,
    notification_type: Channel | None = None,
) -> Response:
    await enforce_rate_limit(request, limits, api_key, scope="read", user_id=None)
    items, total = await store.page(
        api_key.id,
        user_id=user_id,
        status=status.value if status else None,
        notification_type=notification_type.value if notification_type else None,
        page=pagination.page,
        limit=pagination.limit,
    )
    return json_response(page_of(items, total, pagination))


_CALLBACK_TARGET = {
    "delivered": NotificationStatus.DELIVERED,
    "pending": None,
    "failed": NotificationStatus.FAILED,
}


@router.post(
    "/api/v1/{channel}/status/",
    tags=["internal"],
    summary="Status callback from workers and provider receipts (internal key)",
    response_model=Envelope[CallbackResult],
    responses=_CALLBACK_ERRORS,
)
@router.post("/api/v1/{channel}/status", include_in_schema=False)
async def status_callback(
    channel: Literal["email", "push"],
    body: StatusCallback,
    store: StoreDep,
    suppressions: SuppressionsDep,
    _: InternalKey,
) -> dict[str, Any]:
    """`delivered` and `failed` end a notification; `pending` (the provider still has it)
    changes nothing, since only a worker's claim makes a notification `processing`. Moves are
    monotonic: a late or replayed callback never takes a notification backwards. `bounced`
    and `complained` (email) suppress the address; a bounce also fails a notification still
    open (`services/api_gateway/suppressions.py`)."""
    detail = f"{channel} callback: {body.status}"
    if body.timestamp is not None:
        detail += f" at {body.timestamp.isoformat()}"
    suppressed = False
    if body.status in REPORTS:
        if channel != "email":
            raise ValidationFailed(
                f"`{body.status}` is reported for email only", code="channel_mismatch"
            )
        result, suppressed = await report_bounce(
            store, suppressions, body.notification_id, body.status, detail=detail, error=body.error
        )
    else:
        target = _CALLBACK_TARGET[body.status]
        result = await store.record_callback(
            body.notification_id,
            channel,
            target,
            detail=detail,
            error=body.error if target is NotificationStatus.FAILED else None,
        )
    data = {
        "notification_id": str(body.notification_id),
        "status": result.status.value if result.status else None,
        "applied": result.applied,
        "suppressed": suppressed,
    }
    message = "status updated" if result.applied else "status unchanged (no backwards move)"
    return ok(data, message=message)
