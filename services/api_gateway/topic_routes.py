"""HTTP routes of topics and broadcasts: subscribe users to a topic, send to all of them.

Each route delegates to `TopicStore` (SQL) or `Broadcasts` (the topic send); a topic send
answers 202 with the broadcast id at once and fans out afterwards (`broadcasts.py`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request, Response

from services.api_gateway.deps import (
    BroadcastsDep,
    CurrentApiKey,
    RateLimitsDep,
    TopicsDep,
    enforce_rate_limit,
)
from services.api_gateway.idempotency import fingerprint, parse_idempotency_key
from services.api_gateway.routes import IdempotencyKeyHeader, json_response
from services.api_gateway.schemas import (
    BroadcastAccepted,
    BroadcastView,
    SubscriberList,
    SubscribersChanged,
    TopicKey,
    TopicPut,
    TopicSendRequest,
    TopicView,
)
from shared.envelope import Envelope, ok
from shared.errors import BadRequest, error_responses

router = APIRouter(tags=["topics"])

TopicPath = Annotated[TopicKey, Path(description="Your name for the topic, e.g. `release-notes`.")]

_WHY = {
    400: "malformed JSON or `Idempotency-Key`",
    401: "`invalid_api_key`",
    404: "`topic_not_found`",
    409: "`request_in_progress` (retry after `Retry-After`)",
    413: "body over 64 KiB (512 KiB for a subscriber list)",
    422: "`validation_error`",
    429: "`rate_limited` (see `Retry-After`)",
}
_SEND_WHY = {
    **_WHY,
    404: "`topic_not_found` or `template_not_found`",
    422: "`validation_error`, `missing_variables`, `unsafe_link` or `idempotency_key_reused`",
    503: "`dependency_unavailable` (see `Retry-After`)",
}


@router.put(
    "/v1/topics/{key}",
    summary="Create or update a topic",
    responses={200: {"model": Envelope[TopicView]}, **error_responses(_WHY, 401, 422, 429)},
    response_class=Response,
)
async def put_topic(
    request: Request,
    key: TopicPath,
    body: TopicPut,
    topics: TopicsDep,
    limits: RateLimitsDep,
    api_key: CurrentApiKey,
) -> Response:
    """Topics belong to your API key; putting one again changes its description."""
    await enforce_rate_limit(request, limits, api_key, scope="send", user_id=None)
    return json_response(ok(await topics.put(api_key.id, key, body.description)))


async def _change(
    request: Request,
    key: str,
    body: SubscriberList,
    topics: Any,
    limits: Any,
    api_key: Any,
    *,
    add: bool,
) -> Response:
    await enforce_rate_limit(request, limits, api_key, scope="send", user_id=None)
    return json_response(ok(await topics.subscribe(api_key.id, key, body.user_ids, add=add)))


_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Envelope[SubscribersChanged]},
    **error_responses(_WHY, 401, 404, 422, 429),
}


@router.post(
    "/v1/topics/{key}/subscribers",
    summary="Subscribe users to a topic (up to 10,000 per call)",
    responses=_CHANGE_RESPONSES,
    response_class=Response,
)
async def subscribe(
    request: Request,
    key: TopicPath,
    body: SubscriberList,
    topics: TopicsDep,
    limits: RateLimitsDep,
    api_key: CurrentApiKey,
) -> Response:
    """Adding a user already subscribed changes nothing (`changed` counts the new ones).
    Users are not looked up here: one that does not exist is counted `skipped` when a
    broadcast reaches it."""
    return await _change(request, key, body, topics, limits, api_key, add=True)


@router.delete(
    "/v1/topics/{key}/subscribers",
    summary="Unsubscribe users from a topic (up to 10,000 per call)",
    responses=_CHANGE_RESPONSES,
    response_class=Response,
)
async def unsubscribe(
    request: Request,
    key: TopicPath,
    body: SubscriberList,
    topics: TopicsDep,
    limits: RateLimitsDep,
    api_key: CurrentApiKey,
) -> Response:
    return await _change(request, key, body, topics, limits, api_key, add=False)


@router.post(
    "/v1/topics/{key}/send",
    status_code=202,
    summary="Send to every subscriber of a topic",
    responses={
        202: {"model": Envelope[BroadcastAccepted], "description": "the broadcast is durable"},
        **error_responses(_SEND_WHY, 400, 401, 404, 409, 422, 429, 503),
    },
    response_class=Response,
)
async def send_to_topic(
    request: Request,
    key: TopicPath,
    body: TopicSendRequest,
    broadcasts: BroadcastsDep,
    limits: RateLimitsDep,
    api_key: CurrentApiKey,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """A 202 with the `broadcast_id` and `total` (the subscribers now) at once; the fan-out
    sends each subscriber its own notification afterwards, in chunks, through the same path as
    `POST /v1/notifications/send` (preferences, quiet hours, durable accept). Follow it at
    `GET /v1/broadcasts/{broadcast_id}`."""
    idem = parse_idempotency_key(idempotency_key)
    await enforce_rate_limit(request, limits, api_key, scope="send", user_id=None)
    try:
        raw = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the request body is not valid JSON", code="invalid_json") from exc
    answer, replayed = await broadcasts.create(
        api_key, key, body, idempotency_key=idem, fingerprint=fingerprint(raw)
    )
    return json_response(answer, 202, {"Idempotency-Replayed": "true"} if replayed else None)


@router.get(
    "/v1/broadcasts/{broadcast_id}",
    summary="A broadcast's progress by outcome",
    responses={
        200: {"model": Envelope[BroadcastView]},
        **error_responses({**_WHY, 404: "`broadcast_not_found`"}, 401, 404, 422, 429),
    },
    response_class=Response,
)
async def broadcast_progress(
    request: Request,
    broadcast_id: Annotated[uuid.UUID, Path(description="The `broadcast_id` of the 202.")],
    topics: TopicsDep,
    limits: RateLimitsDep,
    api_key: CurrentApiKey,
) -> Response:
    await enforce_rate_limit(request, limits, api_key, scope="read", user_id=None)
    return json_response(ok(await topics.view(api_key.id, broadcast_id)))
