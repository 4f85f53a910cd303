"""Errors are values with stable codes. A route raises; `install_error_handlers` translates.

Every failure leaves a service as the common envelope with the right HTTP status: validation
(422 `validation_error` with `details`), malformed JSON (400 `invalid_json`), unknown route
(404 `not_found`), wrong method (405 `method_not_allowed`), and anything unexpected
(500 `internal_error`, logged with its trace, never returned).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.envelope import ErrorEnvelope, error_body

logger = logging.getLogger("shared.errors")


class TransientError(Exception):
    """A dependency failed in a way worth retrying (connection refused, timeout, 5xx): it may
    answer next time. Not an answer to a client: callers turn it into a retry or a 503."""


class AppError(Exception):
    """Base of every error a service raises on purpose."""

    status_code: int = 400
    code: str = "bad_request"
    message: str = "the request could not be processed"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status_code: int | None = None,
        details: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status_code = status_code or self.status_code
        self.details = [dict(d) for d in details] if details is not None else None
        self.headers = dict(headers) if headers else None
        super().__init__(self.message)


class BadRequest(AppError):
    status_code, code, message = 400, "bad_request", "the request is malformed"


class Unauthorized(AppError):
    status_code, code, message = 401, "unauthorized", "authentication is required"


class Forbidden(AppError):
    status_code, code, message = 403, "forbidden", "you may not do this"


class NotFound(AppError):
    status_code, code, message = 404, "not_found", "not found"


class Conflict(AppError):
    status_code, code, message = 409, "conflict", "the request conflicts with current state"


class PayloadTooLarge(AppError):
    status_code, code, message = 413, "payload_too_large", "the request body is too large"


class ValidationFailed(AppError):
    status_code, code, message = 422, "validation_error", "the request is invalid"


class RateLimited(AppError):
    status_code, code, message = 429, "rate_limited", "too many requests"


class DependencyUnavailable(AppError):
    status_code, code, message = (
        503,
        "dependency_unavailable",
        "a service this request needs is unavailable",
    )


def error_responses(why: Mapping[int, str], *codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error envelopes a route can answer, so the contract documents
    every status a caller can see. `why` says, per status, which error codes it carries; 422
    is always listed (FastAPI's default 422 schema is not our envelope)."""
    return {code: {"model": ErrorEnvelope, "description": why[code]} for code in (422, *codes)}


def _field_name(loc: Sequence[Any]) -> str:
    # Drop the "body"/"query"/"path" root so clients see the field as they sent it.
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_details(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [
        {"field": _field_name(e.get("loc", ())), "message": str(e.get("msg", ""))} for e in errors
    ]


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return JSONResponse(error_body("invalid_json", "the request body is not valid JSON"), 400)
    return JSONResponse(
        error_body("validation_error", "the request is invalid", validation_details(errors)),
        status_code=422,
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = "no such route"
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


# SQLSTATEs PostgreSQL uses for text it cannot store (a NUL byte, an unpaired surrogate).
_UNSTORABLE_TEXT = {"22021", "22P05"}


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """Input the database refuses as text is the client's error, not ours.

    Edge validation should catch it first; this is the safety net so it can never be a 500.
    """
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if sqlstate is None:
        sqlstate = getattr(getattr(getattr(exc, "orig", None), "__cause__", None), "sqlstate", None)
    if sqlstate in _UNSTORABLE_TEXT:
        return JSONResponse(
            error_body(
                "invalid_characters", "the request contains characters that cannot be stored"
            ),
            status_code=422,
        )
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body("internal_error", "an unexpected error occurred"), 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
