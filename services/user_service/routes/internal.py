"""Internal API (`/internal/v1`), for the gateway and the push worker; every route needs
`X-Internal-API-Key` (checked in constant time by `shared.auth`)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Response

from services.user_service.deps import AccountsDep, AuthDep
from services.user_service.errors import user_not_found
from services.user_service.routes import BODY, error_responses
from services.user_service.schemas import DeviceTokenRef, TokenVersionOut, UnsubscribeIn
from shared.auth import require_internal_key
from shared.contracts import Contact, ContactPreferences
from shared.envelope import Envelope, ok

router = APIRouter(
    prefix="/internal/v1", tags=["internal"], dependencies=[Depends(require_internal_key)]
)

# The contact JSON comes from Redis ready-made; splice it into the envelope instead of
# parsing and re-serialising it on the gateway's hot path.
_CONTACT_HEAD = b'{"success":true,"data":'
_CONTACT_TAIL = b',"error":null,"message":"ok","meta":null}'


@router.get(
    "/users/{user_id}/contact",
    response_model=Envelope[Contact],
    summary="How to reach a user (cached)",
    responses=error_responses(401, 404),
)
async def get_contact(user_id: uuid.UUID, accounts: AccountsDep) -> Response:
    contact = await accounts.contact_json(user_id)
    return Response(_CONTACT_HEAD + contact + _CONTACT_TAIL, media_type="application/json")


@router.get(
    "/users/{user_id}/token-version",
    response_model=Envelope[TokenVersionOut],
    summary="The version a user's access tokens must carry (for services verifying tokens)",
    description="Read from the database and written back to Redis, where services look first.",
    responses=error_responses(401, 404),
)
async def get_token_version(user_id: uuid.UUID, auth: AuthDep) -> dict[str, Any]:
    version = await auth.token_version(user_id)
    if version is None:
        raise user_not_found()
    return ok(TokenVersionOut(user_id=user_id, token_version=version))


@router.post(
    "/devices/remove",
    response_model=Envelope[dict[str, bool]],
    summary="Forget a dead push token (200 whether or not it existed)",
    responses=error_responses(*BODY, 401),
)
async def remove_device_by_token(body: DeviceTokenRef, accounts: AccountsDep) -> dict[str, Any]:
    """The token travels in the body so that no URL, and so no access log, carries it."""
    removed = await accounts.remove_device_by_token(body.token)
    return ok({"removed": removed}, "device removed" if removed else "device already gone")


@router.post(
    "/users/{user_id}/unsubscribe",
    response_model=Envelope[ContactPreferences],
    summary="Turn one category off on one channel (the gateway's unsubscribe links; idempotent)",
    responses=error_responses(*BODY, 401, 404),
)
async def unsubscribe(
    user_id: uuid.UUID, body: UnsubscribeIn, accounts: AccountsDep
) -> dict[str, Any]:
    return ok(await accounts.unsubscribe(user_id, body), "unsubscribed")
