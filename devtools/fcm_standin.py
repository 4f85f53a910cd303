"""A local stand-in for Firebase Cloud Messaging HTTP v1, for the dev stack and the tests.

It speaks the real protocol, so the push service runs the same code against it as against
Google:

- `POST /token`: the OAuth2 JWT-bearer grant. The RS256 assertion is verified against the
  public key of the service-account JSON the stand-in was started with (the dev account is
  generated here, its `token_uri` pointing at this stand-in).
- `POST /v1/projects/{project}/messages:send`: needs a bearer token this stand-in issued,
  validates the v1 message shape and answers `{"name": ...}`, or an error in FCM's own shape.

The emulator endpoints (`/emulator/...`) let a developer or a test read what arrived, and make
chosen device tokens fail (`unregistered`, `invalid_argument`, `unavailable` = 503 +
Retry-After, `quota` = 429 + Retry-After, `slow`); a fault for the token `*` applies to every
token without one of its own, the probe's included: FCM itself down. Everything is kept in
memory.

Run it with `python -m devtools.fcm_standin` (port `FCM_STANDIN_PORT`, 8085).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.push_service.credentials import (
    ensure_service_account_file,
    load_service_account,
    service_account_path,
)
from shared.envelope import ok
from shared.errors import NotFound
from shared.http import create_service_app

logger = logging.getLogger("devtools.fcm_standin")

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
ACCEPTED_SCOPES = frozenset({FCM_SCOPE, "https://www.googleapis.com/auth/cloud-platform"})
# google-auth always signs the assertion for Google's token endpoint, whatever `token_uri`
# says, so that audience is accepted next to our own URL.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

FaultKind = Literal["unregistered", "invalid_argument", "unavailable", "quota", "slow"]


# --- the FCM v1 message shape ------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Notification(_Strict):
    title: str | None = None
    body: str | None = None
    image: str | None = None


class _AndroidNotification(_Strict):
    title: str | None = None
    body: str | None = None
    icon: str | None = None
    color: str | None = None
    sound: str | None = None
    tag: str | None = None
    click_action: str | None = None
    image: str | None = None
    channel_id: str | None = None
    notification_priority: str | None = None
    default_sound: bool | None = None
    visibility: str | None = None
    notification_count: int | None = None


class _Android(_Strict):
    collapse_key: str | None = None
    priority: Literal["NORMAL", "HIGH"] | None = None
    ttl: str | None = Field(default=None, pattern=r"^\d+(\.\d{1,9})?s$")
    restricted_package_name: str | None = None
    data: dict[str, str] | None = None
    notification: _AndroidNotification | None = None
    fcm_options: dict[str, str] | None = None
    direct_boot_ok: bool | None = None


class _WebpushFcmOptions(_Strict):
    link: str | None = None
    analytics_label: str | None = None

    @field_validator("link")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("webpush.fcm_options.link must be an HTTPS URL")
        return value


class _Webpush(_Strict):
    headers: dict[str, str] | None = None
    data: dict[str, str] | None = None
    notification: dict[str, Any] | None = None
    fcm_options: _WebpushFcmOptions | None = None


class _ApnsFcmOptions(_Strict):
    analytics_label: str | None = None
    image: str | None = None


class _Apns(_Strict):
    headers: dict[str, str] | None = None
    payload: dict[str, Any] | None = None
    fcm_options: _ApnsFcmOptions | None = None
    live_activity_token: str | None = None


class FcmMessage(_Strict):
    name: str | None = None
    data: dict[str, str] | None = None
    notification: _Notification | None = None
    android: _Android | None = None
    webpush: _Webpush | None = None
    apns: _Apns | None = None
    fcm_options: dict[str, str] | None = None
    token: str | None = Field(default=None, min_length=1)
    topic: str | None = None
    condition: str | None = None


class SendRequest(_Strict):
    validate_only: bool = False
    message: FcmMessage


# --- state -------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: FaultKind
    seconds: float = 1.0
    times: int | None = None
    """How many more requests it applies to; None means until cleared."""


EVERY_TOKEN = "*"
"""A fault set for this token applies to every token without one of its own."""


@dataclass
class StandinState:
    service_accounts: dict[str, dict[str, str]]
    """Keyed by `client_email`."""
    token_ttl_seconds: int = 3600
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    """access token -> (project id, expiry as epoch seconds)."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, Fault] = field(default_factory=dict)
    token_requests: int = 0

    def take_fault(self, token: str) -> Fault | None:
        """The token's own fault, else the one set for every token (`*`: FCM itself down)."""
        key = token if token in self.faults else EVERY_TOKEN
        fault = self.faults.get(key)
        if fault is None:
            return None
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                del self.faults[key]
        return fault


class FaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1)
    fault: FaultKind
    seconds: float = Field(default=1.0, ge=0, le=300)
    times: int | None = Field(default=None, ge=1)


# --- responses ---------------------------------------------------------------------------


def fcm_error(
    http_status: int,
    status: str,
    message: str,
    error_code: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    extra_details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """An error in Google's shape, which the push service (and any FCM client) parses."""
    details: list[dict[str, Any]] = []
    if error_code is not None:
        details.append({"@type": FCM_ERROR_TYPE, "errorCode": error_code})
    details.extend(extra_details or [])
    body: dict[str, Any] = {"error": {"code": http_status, "message": message, "status": status}}
    if details:
        body["error"]["details"] = details
    return JSONResponse(body, status_code=http_status, headers=headers)


def _oauth_error(error: str, description: str, status_code: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code)


def _field_violations(exc: ValidationError) -> list[dict[str, Any]]:
    violations = [
        {"field": ".".join(str(p) for p in err["loc"]), "description": err["msg"]}
        for err in exc.errors()
    ]
    return [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}]


# --- routes ------------------------------------------------------------------------------


def _state(request: Request) -> StandinState:
    state: StandinState = request.app.state.standin
    return state


def _fcm_router() -> APIRouter:
    router = APIRouter()

    @router.post("/token", include_in_schema=False)
    async def token(request: Request) -> JSONResponse:
        state = _state(request)
        state.token_requests += 1
        # urlencoded by hand: Starlette's form parser needs python-multipart for one form
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("latin-1")).items()}
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type.")
        assertion = form.get("assertion")
        if not assertion:
            return _oauth_error("invalid_request", "Missing required parameter: assertion")
        try:
            claims = _verify_assertion(state, assertion, str(request.url))
        except jwt.PyJWTError as exc:
            return _oauth_error("invalid_grant", f"Invalid JWT: {exc}")
        access_token = "ya29.standin-" + secrets.token_urlsafe(32)
        project = state.service_accounts[claims["iss"]].get("project_id", "")
        state.tokens[access_token] = (project, time.time() + state.token_ttl_seconds)
        return JSONResponse(
            {
                "access_token": access_token,
                "expires_in": state.token_ttl_seconds,
                "token_type": "Bearer",
            }
        )

    @router.post("/v1/projects/{project}/messages:send", include_in_schema=False)
    async def send(project: str, request: Request) -> JSONResponse:
        state = _state(request)
        auth_error = _check_bearer(state, request, project)
        if auth_error is not None:
            return auth_error
        try:
            payload = SendRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return fcm_error(
                400,
                "INVALID_ARGUMENT",
                "Request contains an invalid argument.",
                "INVALID_ARGUMENT",
                extra_details=_field_violations(exc),
            )
        message = payload.message
        targets = [t for t in (message.token, message.topic, message.condition) if t]
        if len(targets) != 1:
            return fcm_error(
                400,
                "INVALID_ARGUMENT",
                "Exactly one of token, topic or condition must be set.",
                "INVALID_ARGUMENT",
            )
        device = message.token or ""
        fault = state.take_fault(device) if device else None
        outcome = await _apply_fault(fault)
        state.requests.append(
            {"token": device, "project": project, "outcome": "ok" if outcome is None else "fault"}
        )
        if outcome is not None:
            return outcome
        name = f"projects/{project}/messages/{uuid.uuid4().hex}"
        if not payload.validate_only:
            state.messages.append(
                {
                    "name": name,
                    "project": project,
                    "token": device or None,
                    "topic": message.topic,
                    "message": message.model_dump(exclude_none=True),
                    "received_at": time.time(),
                }
            )
        return JSONResponse({"name": name})

    return router


def _verify_assertion(state: StandinState, assertion: str, own_url: str) -> dict[str, Any]:
    """Signature, issuer, audience, lifetime and scope of the service account's assertion."""
    unverified = jwt.decode(assertion, options={"verify_signature": False})
    account = state.service_accounts.get(str(unverified.get("iss")))
    if account is None:
        raise jwt.InvalidIssuerError("unknown service account")
    public_key = serialization.load_pem_private_key(
        account["private_key"].encode(), password=None
    ).public_key()
    audiences = [GOOGLE_TOKEN_AUDIENCE, own_url, account.get("token_uri", own_url)]
    claims: dict[str, Any] = jwt.decode(
        assertion,
        public_key,  # type: ignore[arg-type]
        algorithms=["RS256"],
        audience=audiences,
        options={"require": ["iss", "aud", "iat", "exp"]},
    )
    if claims["exp"] - claims["iat"] > 3600:
        raise jwt.InvalidTokenError("assertion lifetime exceeds one hour")
    scopes = set(str(claims.get("scope", "")).split())
    if not scopes & ACCEPTED_SCOPES:
        raise jwt.InvalidTokenError("scope does not allow Firebase messaging")
    return claims


def _check_bearer(state: StandinState, request: Request, project: str) -> JSONResponse | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    issued = state.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
    if issued is None or issued[1] < time.time():
        return fcm_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        )
    if issued[0] and issued[0] != project:
        return fcm_error(
            403, "PERMISSION_DENIED", "Permission denied for this project.", "SENDER_ID_MISMATCH"
        )
    return None


async def _apply_fault(fault: Fault | None) -> JSONResponse | None:
    if fault is None:
        return None
    retry_after = {"Retry-After": str(max(0, round(fault.seconds)))}
    if fault.kind == "slow":
        await asyncio.sleep(fault.seconds)  # the fault itself: answer late, then succeed
        return None
    if fault.kind == "unregistered":
        return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
    if fault.kind == "invalid_argument":
        return fcm_error(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            "INVALID_ARGUMENT",
        )
    if fault.kind == "unavailable":
        return fcm_error(
            503,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            "UNAVAILABLE",
            headers=retry_after,
        )
    return fcm_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests'.",
        "QUOTA_EXCEEDED",
        headers=retry_after,
    )


def _emulator_router() -> APIRouter:
    router = APIRouter(prefix="/emulator", tags=["emulator"])

    @router.get("/messages", summary="Messages accepted so far")
    async def list_messages(request: Request, token: str | None = None) -> dict[str, Any]:
        messages = _state(request).messages
        if token is not None:
            messages = [m for m in messages if m["token"] == token]
        return ok(messages, message=f"{len(messages)} messages")

    @router.delete("/messages", summary="Forget every message, request and fault")
    async def clear_messages(request: Request) -> dict[str, Any]:
        state = _state(request)
        state.messages.clear()
        state.requests.clear()
        state.faults.clear()
        state.token_requests = 0
        return ok(None, message="cleared")

    @router.delete("/tokens", summary="Revoke every access token issued so far")
    async def revoke_tokens(request: Request) -> dict[str, Any]:
        _state(request).tokens.clear()
        return ok(None, message="tokens revoked")

    @router.get("/requests", summary="Every messages:send call, accepted or faulted")
    async def list_requests(request: Request) -> dict[str, Any]:
        return ok(_state(request).requests)

    @router.get("/stats", summary="Counters tests use (token grants, sends)")
    async def stats(request: Request) -> dict[str, Any]:
        state = _state(request)
        return ok(
            {
                "token_requests": state.token_requests,
                "send_requests": len(state.requests),
                "messages": len(state.messages),
            }
        )

    @router.post("/faults", summary="Make one device token fail")
    async def add_fault(body: FaultRequest, request: Request) -> dict[str, Any]:
        _state(request).faults[body.token] = Fault(body.fault, body.seconds, body.times)
        return ok(body.model_dump(), message="fault set")

    @router.get("/faults", summary="Faults in force")
    async def list_faults(request: Request) -> dict[str, Any]:
        faults = _state(request).faults
        return ok(
            [
                {"token": t, "fault": f.kind, "seconds": f.seconds, "times": f.times}
                for t, f in faults.items()
            ]
        )

    @router.delete("/faults/{token}", summary="Clear one token's fault")
    async def clear_fault(token: str, request: Request) -> dict[str, Any]:
        if _state(request).faults.pop(token, None) is None:
            raise NotFound("no fault for this token", code="fault_not_found")
        return ok(None, message="fault cleared")

    @router.delete("/faults", summary="Clear every fault")
    async def clear_faults(request: Request) -> dict[str, Any]:
        _state(request).faults.clear()
        return ok(None, message="faults cleared")

    return router


def create_app(service_accounts: list[dict[str, str]], *, token_ttl_seconds: int = 3600) -> FastAPI:
    """The stand-in, trusting the keys of `service_accounts` (JSON dicts as Google issues)."""
    app = create_service_app(
        service="fcm_standin",
        title="FCM HTTP v1 stand-in",
        description="OAuth2 token endpoint, messages:send and an emulator API for tests.",
    )
    app.state.standin = StandinState(
        service_accounts={sa["client_email"]: sa for sa in service_accounts},
        token_ttl_seconds=token_ttl_seconds,
    )
    app.include_router(_fcm_router())
    app.include_router(_emulator_router())

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, Any]:
        return ok({"service": "fcm_standin", "status": "ok"}, message="healthy")

    return app


@contextlib.asynccontextmanager
async def serve_in_process(
    app: FastAPI, *, host: str = "127.0.0.1", port: int
) -> AsyncIterator[uvicorn.Server]:
    """Run `app` on a real socket inside the current event loop (tests use it)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped before it started")
            await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        await task


def main() -> None:
    from shared.logging import setup_logging
    from shared.settings import get_settings

    settings = get_settings()
    setup_logging("fcm_standin", settings.log_level, settings.log_format)
    token_uri = f"http://127.0.0.1:{settings.fcm_standin_port}/token"
    path = service_account_path(settings)
    ensure_service_account_file(path, project_id=settings.fcm_project_id, token_uri=token_uri)
    account = load_service_account(path)
    logger.info("FCM stand-in trusting %s (%s)", account["client_email"], path)
    uvicorn.run(
        create_app([account]),
        host=settings.bind_host,
        port=settings.fcm_standin_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
