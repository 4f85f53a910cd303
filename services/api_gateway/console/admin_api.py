"""The operator API: `/v1/admin/dead-letters/...` and `/v1/admin/suppressions`, for the
console, the CLI and scripts.

Authentication (`services/api_gateway/operators.py`): `Authorization: Bearer <API key with the
admin scope>` or an admin's access token (bearer, or the console cookie plus `X-CSRF-Token`).
The routes forward to the channel's worker (`console/dead_letters.py`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from services.api_gateway.console.dead_letters import (
    DeadLetter,
    DeadLetterClient,
    DeadLetterDetail,
    PurgeReport,
    ReplayReport,
)
from services.api_gateway.deps import SuppressionsDep
from services.api_gateway.operators import CurrentOperator
from shared.envelope import Envelope, ErrorEnvelope, ok
from shared.errors import BadRequest, NotFound
from shared.messaging.message import Channel
from shared.pagination import PaginationQuery, page_of
from shared.suppressions import SuppressionReason

router = APIRouter(prefix="/v1/admin", tags=["admin"])

ChannelPath = Annotated[Channel, Path(description="`email` or `push`")]
MessageIdPath = Annotated[str, Path(min_length=1, max_length=255, description="the message id")]


def _errors(**extra: str) -> dict[int | str, dict[str, Any]]:
    described = {
        401: "`unauthorized`, `invalid_api_key`, `invalid_token` or `token_expired`",
        403: "`forbidden` (no admin scope, not an admin) or `csrf_failed` (cookie without token)",
        422: "`validation_error` (e.g. an unknown channel)",
        503: "`dependency_unavailable`: the channel's worker is down or unreachable",
    }
    described.update({k.lstrip("_"): v for k, v in extra.items()})
    return {
        int(code): {"model": ErrorEnvelope, "description": text} for code, text in described.items()
    }


class ReplayRequest(BaseModel):
    """Replay one message by its id; without a body (or `message_id`), replay them all."""

    model_config = ConfigDict(extra="forbid")

    message_id: str | None = Field(default=None, min_length=1, max_length=255)


def _dead_letters(request: Request) -> DeadLetterClient:
    client: DeadLetterClient = request.app.state.console.dead_letters
    return client


@router.get(
    "/dead-letters/{channel}",
    summary="List a channel's dead letters, oldest first",
    response_model=Envelope[list[DeadLetter]],
    responses=_errors(),
)
async def list_dead_letters(
    request: Request,
    channel: ChannelPath,
    _: CurrentOperator,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    found = await _dead_letters(request).list(channel, page=page, limit=limit)
    return ok(found.items, message=f"{found.meta.total} dead letters", meta=found.meta)


@router.get(
    "/dead-letters/{channel}/{message_id}",
    summary="One dead letter, with the message itself",
    response_model=Envelope[DeadLetterDetail],
    responses=_errors(_404="`dead_letter_not_found`"),
)
async def get_dead_letter(
    request: Request, channel: ChannelPath, message_id: MessageIdPath, _: CurrentOperator
) -> dict[str, Any]:
    return ok(await _dead_letters(request).get(channel, message_id), message="dead letter")


@router.post(
    "/dead-letters/{channel}/replay",
    summary="Replay one dead letter (`message_id`) or all of a channel's",
    response_model=Envelope[ReplayReport],
    responses=_errors(_404="`dead_letter_not_found` (with a `message_id`)"),
)
async def replay_dead_letters(
    request: Request,
    channel: ChannelPath,
    _: CurrentOperator,
    body: Annotated[ReplayRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Each replayed notification goes from `failed` back to `queued` (a new run in its history)
    and is published as attempt 1; one that is no longer `failed` is skipped and stays."""
    report = await _dead_letters(request).replay(channel, body.message_id if body else None)
    return ok(
        report, message=f"{len(report['replayed'])} replayed, {len(report['skipped'])} skipped"
    )


@router.delete(
    "/dead-letters/{channel}",
    summary="Purge a channel's dead letters (needs `confirm=true`)",
    response_model=Envelope[PurgeReport],
    responses=_errors(_400="`confirmation_required`: add `?confirm=true`"),
)
async def purge_dead_letters(
    request: Request,
    channel: ChannelPath,
    _: CurrentOperator,
    confirm: Annotated[
        bool, Query(description="must be `true`: the purge cannot be undone")
    ] = False,
) -> dict[str, Any]:
    if not confirm:
        raise BadRequest(
            "purging deletes the messages for good; repeat with ?confirm=true",
            code="confirmation_required",
        )
    report = await _dead_letters(request).purge(channel)
    return ok(report, message=f"{report['purged']} dead letters purged")


# --- the email suppression list (shared/suppressions.py) ----------------------------------


class SuppressionOut(BaseModel):
    address: str
    reason: SuppressionReason
    detail: str | None
    notification_id: str | None
    created_at: str


class SuppressionIn(BaseModel):
    """Suppress an address by hand (`manual`), or record a bounce or complaint learnt
    elsewhere."""

    model_config = ConfigDict(extra="forbid")

    address: EmailStr = Field(max_length=254)
    reason: SuppressionReason = SuppressionReason.MANUAL
    detail: str | None = Field(default=None, max_length=500, pattern=r"^[^\x00]*$")


AddressPath = Annotated[str, Path(min_length=3, max_length=254, description="the address")]


@router.get(
    "/suppressions",
    summary="List suppressed email addresses, newest first",
    response_model=Envelope[list[SuppressionOut]],
    responses=_errors(),
)
async def list_suppressions(
    suppressions: SuppressionsDep,
    _: CurrentOperator,
    pagination: PaginationQuery,
    address: Annotated[str | None, Query(max_length=254, description="address prefix")] = None,
    reason: SuppressionReason | None = None,
) -> dict[str, Any]:
    items, total = await suppressions.page(
        address_prefix=address, reason=reason, limit=pagination.limit, offset=pagination.offset
    )
    return page_of([s.as_json() for s in items], total, pagination, f"{total} suppressed")


@router.post(
    "/suppressions",
    status_code=201,
    summary="Suppress an address (idempotent: an address already listed keeps its entry)",
    response_model=Envelope[SuppressionOut],
    responses=_errors(),
)
async def add_suppression(
    body: SuppressionIn, suppressions: SuppressionsDep, _: CurrentOperator
) -> dict[str, Any]:
    added = await suppressions.add(body.address, body.reason, detail=body.detail)
    return ok(added.as_json(), message="address suppressed")


@router.delete(
    "/suppressions/{address}",
    summary="Mail an address again",
    response_model=Envelope[None],
    responses=_errors(_404="`suppression_not_found`"),
)
async def remove_suppression(
    address: AddressPath, suppressions: SuppressionsDep, _: CurrentOperator
) -> dict[str, Any]:
    if not await suppressions.remove(address):
        raise NotFound("this address is not suppressed", code="suppression_not_found")
    return ok(None, message="suppression removed")
