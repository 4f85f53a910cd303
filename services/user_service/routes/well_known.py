"""`/.well-known/jwks.json`: the public keys that verify this service's access tokens.

A standard JWKS document (RFC 7517), not the envelope, so any JWT library can read it. It
lists the current signing key and the previous ones still trusted after a rotation.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from services.user_service.deps import AuthDep
from services.user_service.schemas import Jwks

router = APIRouter()


@router.get(
    "/.well-known/jwks.json",
    response_model=Jwks,
    tags=["auth"],
    summary="Public keys that verify access tokens (JWKS)",
)
async def jwks(auth: AuthDep, response: Response) -> dict[str, Any]:
    # Verifiers cache it themselves and refetch on an unknown kid; a shared cache may too.
    response.headers["Cache-Control"] = "public, max-age=300"
    return auth.keys.jwks()
