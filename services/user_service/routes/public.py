"""Public API (`/api/v1`): accounts, login, preferences and devices.

Routes only translate HTTP to `Accounts` calls and back into the envelope.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Query, Response, status

from services.user_service.accounts import preferences_out
from services.user_service.deps import AccountsDep, AuthDep, ClientAddress, ReachableUserId
from services.user_service.models import Preferences, User
from services.user_service.routes import BODY, USER, error_responses
from services.user_service.schemas import (
    NO_CONTROL_CHARS,
    PASSWORD_RULES,
    DeviceIn,
    DeviceOut,
    LoginIn,
    PreferencesIn,
    RefreshIn,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
    UserWithPreferences,
)
from shared.auth import AdminPrincipal, CurrentPrincipal
from shared.contracts import ContactPreferences
from shared.envelope import Envelope, ok
from shared.pagination import PaginationQuery, page_of

router = APIRouter(prefix="/api/v1")

Body = dict[str, Any]


def _user_out(user: User, preferences: Preferences | None) -> UserWithPreferences:
    base = UserOut.model_validate(user).model_dump()
    return UserWithPreferences(**base, preferences=preferences_out(preferences))


# --- registration and login ------------------------------------------------------------------


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=Envelope[UserWithPreferences],
    tags=["users"],
    summary="Register a user",
    description=f"Password: {PASSWORD_RULES} Limited per client address (429).",
    responses=error_responses(*BODY, 409, 429),
)
async def register(body: UserCreate, accounts: AccountsDep, address: ClientAddress) -> Body:
    user, preferences = await accounts.register(body, address)
    return ok(_user_out(user, preferences), "user created")


# Legacy clients post to `/api/v1/users/`; answer it directly rather than
# with a redirect that some clients would not follow for a POST.
router.add_api_route(
    "/users/",
    register,
    methods=["POST"],
    status_code=status.HTTP_201_CREATED,
    response_model=Envelope[UserWithPreferences],
    responses=error_responses(*BODY, 409, 429),
    include_in_schema=False,
)


@router.post(
    "/auth/login",
    response_model=Envelope[TokenOut],
    tags=["auth"],
    summary="Log in: an access token (15 minutes) and a refresh token",
    description=(
        "Throttled per client address (attempts and failures) and per account (growing "
        "delays after repeated failures, never for an address the owner used recently): "
        "429 `rate_limited` with `Retry-After`."
    ),
    responses=error_responses(*BODY, 401, 429),
)
async def login(body: LoginIn, auth: AuthDep, address: ClientAddress) -> Body:
    return ok(await auth.login(body.email, body.password, address), "logged in")


@router.post(
    "/auth/refresh",
    response_model=Envelope[TokenOut],
    tags=["auth"],
    summary="Swap a refresh token for a new access token and refresh token",
    description=(
        "Each refresh token works once. Presenting one that was already used revokes every "
        "token of its session (401 `refresh_token_reused`): a copy is in someone else's hands."
    ),
    responses=error_responses(*BODY, 401),
)
async def refresh(body: RefreshIn, auth: AuthDep) -> Body:
    return ok(await auth.refresh(body.refresh_token), "token refreshed")


@router.post(
    "/auth/logout",
    response_model=Envelope[None],
    tags=["auth"],
    summary="End the session of a refresh token",
    description=(
        "The refresh token and every later one of its session stop working (an unknown token "
        "is ignored). Access tokens already issued expire on their own within 15 minutes; "
        "`POST /users/{user_id}/revoke-tokens` ends them at once."
    ),
    responses=error_responses(*BODY),
)
async def logout(body: RefreshIn, auth: AuthDep) -> Body:
    await auth.logout(body.refresh_token)
    return ok(None, "logged out")


# --- the caller's own account (declared before `/users/{user_id}` so `me` is not an id) ------


@router.get(
    "/users/me",
    response_model=Envelope[UserWithPreferences],
    tags=["users"],
    responses=error_responses(401, 404),
)
async def get_me(principal: CurrentPrincipal, accounts: AccountsDep) -> Body:
    return ok(_user_out(*await accounts.get_user(principal.user_id)))


@router.patch(
    "/users/me",
    response_model=Envelope[UserWithPreferences],
    tags=["users"],
    responses=error_responses(*BODY, *USER, 409),
)
async def update_me(body: UserUpdate, principal: CurrentPrincipal, accounts: AccountsDep) -> Body:
    user, preferences = await accounts.update_user(principal.user_id, body, principal)
    return ok(_user_out(user, preferences), "user updated")


# --- users by id -----------------------------------------------------------------------------


@router.get(
    "/users",
    response_model=Envelope[list[UserOut]],
    tags=["users"],
    summary="List users (admin)",
    responses=error_responses(401, 403),
)
async def list_users(
    _: AdminPrincipal,
    accounts: AccountsDep,
    pagination: PaginationQuery,
    email: str | None = Query(
        default=None, max_length=254, pattern=NO_CONTROL_CHARS, description="part of the email"
    ),
) -> Body:
    users, total = await accounts.list_users(
        email=email, page=pagination.page, limit=pagination.limit
    )
    return page_of([UserOut.model_validate(u) for u in users], total, pagination)


@router.get(
    "/users/{user_id}",
    response_model=Envelope[UserWithPreferences],
    tags=["users"],
    responses=error_responses(*USER),
)
async def get_user(user_id: ReachableUserId, accounts: AccountsDep) -> Body:
    return ok(_user_out(*await accounts.get_user(user_id)))


@router.patch(
    "/users/{user_id}",
    response_model=Envelope[UserWithPreferences],
    tags=["users"],
    responses=error_responses(*BODY, *USER, 409),
)
async def update_user(
    user_id: ReachableUserId,
    body: UserUpdate,
    principal: CurrentPrincipal,
    accounts: AccountsDep,
) -> Body:
    user, preferences = await accounts.update_user(user_id, body, principal)
    return ok(_user_out(user, preferences), "user updated")


@router.delete(
    "/users/{user_id}",
    response_model=Envelope[None],
    tags=["users"],
    responses=error_responses(*USER),
)
async def delete_user(user_id: ReachableUserId, accounts: AccountsDep) -> Body:
    await accounts.delete_user(user_id)
    return ok(None, "user deleted")


@router.post(
    "/users/{user_id}/revoke-tokens",
    response_model=Envelope[None],
    tags=["auth"],
    summary="End every token of a user, on every service (admin, or the user themself)",
    description=(
        "Access tokens stop working everywhere within `TOKEN_VERSION_CACHE_SECONDS` (1 s); "
        "refresh tokens at once. A password change and an account deletion do the same."
    ),
    responses=error_responses(*USER),
)
async def revoke_tokens(user_id: ReachableUserId, auth: AuthDep) -> Body:
    await auth.revoke_tokens(user_id)
    return ok(None, "tokens revoked")


# --- preferences -----------------------------------------------------------------------------


@router.get(
    "/users/{user_id}/preferences",
    response_model=Envelope[ContactPreferences],
    tags=["preferences"],
    responses=error_responses(*USER),
)
async def get_preferences(user_id: ReachableUserId, accounts: AccountsDep) -> Body:
    return ok(await accounts.get_preferences(user_id))


@router.put(
    "/users/{user_id}/preferences",
    response_model=Envelope[ContactPreferences],
    tags=["preferences"],
    responses=error_responses(*BODY, *USER),
)
async def put_preferences(
    user_id: ReachableUserId, body: PreferencesIn, accounts: AccountsDep
) -> Body:
    return ok(await accounts.put_preferences(user_id, body), "preferences saved")


# --- devices ---------------------------------------------------------------------------------


@router.post(
    "/users/{user_id}/devices",
    status_code=status.HTTP_201_CREATED,
    response_model=Envelope[DeviceOut],
    tags=["devices"],
    summary="Register a push device (the newest MAX_DEVICES_PER_USER are kept)",
    description=(
        "A token that another account holds moves to this one (an app install changed "
        "hands) and is answered exactly like a new registration."
    ),
    responses={
        **error_responses(*BODY, *USER),
        200: {"model": Envelope[DeviceOut], "description": "you had registered this token"},
    },
)
async def add_device(
    user_id: ReachableUserId, body: DeviceIn, accounts: AccountsDep, response: Response
) -> Body:
    device, created = await accounts.add_device(user_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
        return ok(DeviceOut.model_validate(device), "device already registered")
    return ok(DeviceOut.model_validate(device), "device registered")


@router.get(
    "/users/{user_id}/devices",
    response_model=Envelope[list[DeviceOut]],
    tags=["devices"],
    responses=error_responses(*USER),
)
async def list_devices(
    user_id: ReachableUserId, accounts: AccountsDep, pagination: PaginationQuery
) -> Body:
    devices, total = await accounts.list_devices(
        user_id, page=pagination.page, limit=pagination.limit
    )
    return page_of([DeviceOut.model_validate(d) for d in devices], total, pagination)


@router.delete(
    "/users/{user_id}/devices/{device_id}",
    response_model=Envelope[None],
    tags=["devices"],
    responses=error_responses(*USER),
)
async def remove_device(
    user_id: ReachableUserId, device_id: uuid.UUID, accounts: AccountsDep
) -> Body:
    await accounts.remove_device(user_id, device_id)
    return ok(None, "device removed")
