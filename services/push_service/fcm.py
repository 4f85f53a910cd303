"""The FCM HTTP v1 client: an OAuth2 access token from a service account, and `messages:send`.

Why google-auth (+ aiohttp for sends) rather than pyfcm: pyfcm 2.x sends with `requests` and sleeps on
`Retry-After` inside the call, which would block the worker's event loop (and every other
message in hand) for as long as FCM asks. Here google-auth only signs the service-account
assertion and keeps the token (its `token_uri` honoured, cached until shortly before expiry);
the one blocking refresh runs in a thread behind a lock, so it happens once, off the loop.
Sends go through one shared aiohttp session under a semaphore of `fcm_concurrency` (httpx's
async client cost about 10 ms of CPU per send under load here, docs/measurements.md and
docs/guides/benchmark.md; aiohttp a fraction of that); a
`Retry-After` is returned to the caller, which schedules the retry through a delay queue
instead of sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import httpx
import orjson
from google.auth import exceptions as google_exceptions
from google.auth.transport import Request as GoogleRequest
from google.auth.transport import Response as GoogleResponse
from google.oauth2 import service_account
from opentelemetry.trace import SpanKind
from prometheus_client import Counter

from shared.messaging.delivery import parse_retry_after
from shared.notification_status import DeviceResult, DeviceStatus
from shared.tracing import span

logger = logging.getLogger("services.push_service.fcm")

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

FCM_SENDS = Counter(
    "notifications_push_fcm_sends_total",
    "messages:send calls by outcome (accepted, unregistered, invalid_token, rejected, transient).",
    ["outcome"],
)
FCM_TOKEN_FETCHES = Counter(
    "notifications_push_fcm_token_fetches_total",
    "OAuth2 access-token grants from the service account's token_uri.",
)

Outcome = Literal["accepted", "unregistered", "invalid_token", "rejected", "transient"]


class FcmAuthError(Exception):
    """No access token could be obtained (token endpoint down or refusing)."""


@dataclass(frozen=True)
class SendResult:
    """What FCM said about one device token."""

    token: str
    outcome: Outcome
    name: str | None = None
    """The provider's message name when accepted: `projects/{p}/messages/{id}`."""
    error: str | None = None
    """The FCM error code (UNREGISTERED, UNAVAILABLE, ...) or a transport error name."""
    retry_after_seconds: float | None = None

    @property
    def dead_token(self) -> bool:
        """The token will never work again and should be removed from the user's devices."""
        return self.outcome in ("unregistered", "invalid_token")

    @property
    def device_status(self) -> DeviceStatus:
        """Accepted; pending after a transient failure (tried again); else refused for good."""
        if self.outcome == "accepted":
            return DeviceStatus.ACCEPTED
        if self.outcome == "transient":
            return DeviceStatus.PENDING
        return DeviceStatus.REJECTED

    def as_device_result(self) -> DeviceResult:
        return DeviceResult(self.token, self.device_status, self.name, self.error)


def fingerprint(token: str) -> str:
    """A short, stable stand-in for a device token in logs (tokens are credentials of sorts)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


# --- access tokens -------------------------------------------------------------------------


class _HttpxResponse(GoogleResponse):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class _HttpxTransport(GoogleRequest):
    """google-auth's transport interface over a sync httpx client (no `requests` needed)."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> GoogleResponse:
        try:
            response = self._client.request(
                method,
                url,
                content=body,
                headers=headers,
                timeout=timeout or httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            message = f"{type(exc).__name__}: {exc}"
            raise google_exceptions.TransportError(message) from exc  # type: ignore[no-untyped-call]
        return _HttpxResponse(response)


class AccessTokenSource:
    """The service account's access token, fetched once and reused until shortly before expiry.

    google-auth treats a token as expired 3m45s early, so a send never races the expiry. A
    refresh blocks (google-auth is synchronous), so it runs in a worker thread, and the lock
    makes concurrent senders wait for one refresh rather than start their own.
    """

    def __init__(self, service_account_info: Mapping[str, Any], *, timeout_seconds: float) -> None:
        self._credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            dict(service_account_info), scopes=[FCM_SCOPE]
        )
        self._http = httpx.Client(timeout=timeout_seconds)
        self._transport = _HttpxTransport(self._http)
        self._lock = asyncio.Lock()
        self.fetches = 0

    @property
    def project_id(self) -> str | None:
        return self._credentials.project_id  # type: ignore[no-any-return]

    async def token(self, *, stale: str | None = None) -> str:
        """A valid access token. Pass `stale` (a token FCM refused) to force a new one."""
        current = self._credentials.token
        if self._credentials.valid and current != stale:
            return current  # type: ignore[no-any-return]
        async with self._lock:
            if self._credentials.valid and self._credentials.token != stale:
                return self._credentials.token  # type: ignore[no-any-return]
            try:
                await asyncio.to_thread(self._credentials.refresh, self._transport)
            except google_exceptions.GoogleAuthError as exc:
                raise FcmAuthError(f"access token refresh failed: {exc}") from exc
            self.fetches += 1
            FCM_TOKEN_FETCHES.inc()
            logger.info("fetched an FCM access token (expires %s UTC)", self._credentials.expiry)
            return self._credentials.token  # type: ignore[no-any-return]

    def close(self) -> None:
        self._http.close()


# --- messages:send -------------------------------------------------------------------------


class FcmClient:
    """Sends one message per device token, at most `concurrency` at a time in this process."""

    def __init__(
        self,
        *,
        base_url: str,
        project_id: str,
        tokens: AccessTokenSource,
        concurrency: int,
        timeout_seconds: float,
    ) -> None:
        self.project_id = project_id
        self.tokens = tokens
        self._url = f"{base_url.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self._semaphore = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_seconds, connect=min(timeout_seconds, 3.0)
        )
        self._session: aiohttp.ClientSession | None = None
        self._span_attributes = {
            "server.address": urlsplit(base_url).hostname or "",
            "fcm.project_id": project_id,
        }

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._concurrency),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self.tokens.close()

    async def probe(self) -> bool:
        """Whether FCM answers: a `validate_only` send to a token that cannot exist. Any
        answer but 429/5xx (here: INVALID_ARGUMENT or UNREGISTERED) means the service is up."""
        body = {"validate_only": True, "message": {"token": "probe", "data": {"probe": "1"}}}
        try:
            access = await self.tokens.token()
        except FcmAuthError:
            return False
        headers = {"Authorization": f"Bearer {access}", "Content-Type": "application/json"}
        try:
            async with self._http().post(self._url, data=orjson.dumps(body), headers=headers) as r:
                status = r.status
        except (aiohttp.ClientError, TimeoutError):
            return False
        return status != 429 and status < 500

    async def send(self, token: str, message: Mapping[str, Any]) -> SendResult:
        """Send `message` (an FCM v1 message without its target) to one device token.

        Never raises: every failure (no access token included) is a `SendResult`, so one bad
        device never hides the others' results.
        """
        body = {"message": {**message, "token": token}}
        with span(
            "fcm messages:send", kind=SpanKind.CLIENT, attributes=self._span_attributes
        ) as sent:
            async with self._semaphore:
                try:
                    result = await self._send_authorized(token, body)
                except FcmAuthError:
                    result = SendResult(token, "transient", error="FCM_AUTH")
            if sent.is_recording():  # the outcome and FCM's error code; never the token
                sent.set_attribute("fcm.outcome", result.outcome)
                if result.error:
                    sent.set_attribute("fcm.error", result.error)
        FCM_SENDS.labels(result.outcome).inc()
        return result

    async def _send_authorized(self, token: str, body: dict[str, Any]) -> SendResult:
        access = await self.tokens.token()
        result = await self._post(token, body, access)
        if result is None:  # 401: the token was revoked or expired early; refresh once
            access = await self.tokens.token(stale=access)
            result = await self._post(token, body, access)
        return result or SendResult(token, "transient", error="UNAUTHENTICATED")

    async def _post(self, token: str, body: dict[str, Any], access: str) -> SendResult | None:
        headers = {"Authorization": f"Bearer {access}", "Content-Type": "application/json"}
        try:
            async with self._http().post(self._url, data=orjson.dumps(body), headers=headers) as r:
                answer = FcmAnswer(r.status, dict(r.headers), _json(await r.read()))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult(token, "transient", error=type(exc).__name__)
        if answer.status == 200:
            return SendResult(token, "accepted", name=answer.body.get("name"))
        if answer.status == 401 and _error_code(answer) is None:
            return None
        return classify_error(token, answer)


@dataclass(frozen=True)
class FcmAnswer:
    """What FCM answered, independent of the HTTP client."""

    status: int
    headers: Mapping[str, str]
    body: dict[str, Any]

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


def classify_error(token: str, answer: FcmAnswer) -> SendResult:
    """Map an FCM error answer to what the sender should do with that device."""
    status = answer.status
    code = _error_code(answer) or answer.body.get("error", {}).get("status") or str(status)
    retry_after = parse_retry_after(answer.header("retry-after"))
    if status == 429 or status >= 500:
        return SendResult(token, "transient", error=code, retry_after_seconds=retry_after)
    if code == "UNREGISTERED":
        return SendResult(token, "unregistered", error=code)
    if code == "INVALID_ARGUMENT" and _blames_token(answer):
        return SendResult(token, "invalid_token", error=code)
    return SendResult(token, "rejected", error=code)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _details(answer: FcmAnswer) -> list[dict[str, Any]]:
    error = answer.body.get("error")
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _error_code(answer: FcmAnswer) -> str | None:
    for detail in _details(answer):
        if detail.get("@type") == FCM_ERROR_TYPE and detail.get("errorCode"):
            return str(detail["errorCode"])
    return None


def _blames_token(answer: FcmAnswer) -> bool:
    """INVALID_ARGUMENT means a bad token unless FCM names another field of the message.

    Deleting a user's devices because our payload was malformed would be a disaster, so a
    field violation on anything but `message.token` keeps the token.
    """
    for detail in _details(answer):
        if detail.get("@type") != BAD_REQUEST_TYPE:
            continue
        fields = {
            str(v.get("field", ""))
            for v in detail.get("fieldViolations", [])
            if isinstance(v, dict)
        }
        if fields - {"message.token", "token"}:
            return False
    return True
