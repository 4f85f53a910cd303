"""HTTP routes: `public` (JWT users and admins) and `internal` (other services)."""

from __future__ import annotations

from typing import Any

from shared.errors import error_responses as shared_error_responses

_WHY = {
    400: "malformed JSON (`invalid_json`)",
    401: "missing or bad credentials",
    403: "not allowed for this caller (`forbidden`)",
    404: "no such user or device",
    409: "conflicts with existing data",
    413: "body over the size limit (`payload_too_large`)",
    422: "invalid input; `details` names each field (`validation_error`)",
    429: "too many attempts (`rate_limited`, with `Retry-After`)",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return shared_error_responses(_WHY, *codes)


BODY = (400, 413)
USER = (401, 403, 404)
