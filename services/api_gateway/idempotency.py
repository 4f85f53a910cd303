"""Idempotency: one accepted notification per (API key, idempotency key), kept 24 h.

The record lives in PostgreSQL. A request first *claims* its key (a `pending` row, committed
on its own, so a concurrent duplicate sees it at once); the accept statement of `store.py` then
turns the claim into `completed` in the same statement that writes the notification, so what a
replay returns can never disagree with what was accepted. A request that fails before
acceptance deletes its claim, so a retry runs afresh. A claim left behind by a crashed process
can be taken over after `idempotency_pending_timeout_seconds`.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from shared.errors import BadRequest, Conflict, ValidationFailed

MAX_KEY_LENGTH = 255


def parse_idempotency_key(header: str | None) -> str | None:
    """The `Idempotency-Key` header, bare or as a quoted string; 400 unless 1-255 visible ASCII."""
    if header is None:
        return None
    value = header.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not all(0x21 <= ord(c) <= 0x7E for c in value):
        raise BadRequest(
            "Idempotency-Key must be 1-255 visible ASCII characters",
            code="invalid_idempotency_key",
        )
    return value


def fingerprint(body: Any) -> str:
    """sha256 of the canonical JSON body (sorted keys), so key order does not matter."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class Claim:
    api_key_id: uuid.UUID
    key: str
    token: uuid.UUID


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict[str, Any]


_CLAIM = """
INSERT INTO api_gateway.idempotency_records
       (api_key_id, key, fingerprint, state, claim_token, created_at, expires_at)
VALUES ($1, $2, $3, 'pending', $4, now(), now() + make_interval(secs => $5))
ON CONFLICT (api_key_id, key) DO UPDATE
   SET fingerprint = EXCLUDED.fingerprint, state = 'pending', claim_token = EXCLUDED.claim_token,
       status_code = NULL, response = NULL, notification_id = NULL,
       created_at = now(), expires_at = EXCLUDED.expires_at
 WHERE idempotency_records.expires_at < now()
    OR (idempotency_records.state = 'pending'
        AND idempotency_records.created_at < now() - make_interval(secs => $6))
RETURNING claim_token
"""

_EXISTING = """
SELECT fingerprint, state, status_code, response FROM api_gateway.idempotency_records
 WHERE api_key_id = $1 AND key = $2
"""

_RELEASE = """
DELETE FROM api_gateway.idempotency_records
 WHERE api_key_id = $1 AND key = $2 AND claim_token = $3 AND state = 'pending'
"""

_PURGE_EXPIRED = """
DELETE FROM api_gateway.idempotency_records
 WHERE ctid = ANY(ARRAY(SELECT ctid FROM api_gateway.idempotency_records
                         WHERE expires_at < now() LIMIT $1))
"""


class IdempotencyStore:
    def __init__(self, pool: asyncpg.Pool, *, ttl_seconds: int, pending_timeout_seconds: int):
        self.pool = pool
        self.ttl_seconds = ttl_seconds
        self.pending_timeout_seconds = pending_timeout_seconds

    async def claim(self, api_key_id: uuid.UUID, key: str, fp: str) -> Claim | Replay:
        """Claim the key, or return the first response to replay; raise on conflicts.

        Two concurrent claims of the same key serialise on the primary key: the second waits
        for the first insert to commit, then sees it, so exactly one request proceeds.
        """
        token = uuid.uuid4()
        async with self.pool.acquire() as conn:
            claimed = await conn.fetchval(
                _CLAIM,
                api_key_id,
                key,
                fp,
                token,
                float(self.ttl_seconds),
                float(self.pending_timeout_seconds),
            )
            if claimed is not None:
                return Claim(api_key_id, key, token)
            row = await conn.fetchrow(_EXISTING, api_key_id, key)
        if row is None:  # released between our two statements: the caller may simply retry
            raise Conflict(
                "a request with this idempotency key is in progress",
                code="request_in_progress",
                headers={"Retry-After": "1"},
            )
        if row["fingerprint"] != fp:
            raise ValidationFailed(
                "this idempotency key was already used with a different request body",
                code="idempotency_key_reused",
            )
        if row["state"] == "pending":
            raise Conflict(
                "a request with this idempotency key is in progress",
                code="request_in_progress",
                headers={"Retry-After": "1"},
            )
        return Replay(status_code=row["status_code"], body=row["response"])

    async def release(self, claim: Claim) -> None:
        """Forget a claim whose request failed before anything was accepted."""
        await self.pool.execute(_RELEASE, claim.api_key_id, claim.key, claim.token)

    async def purge_expired(self, limit: int = 1000) -> int:
        status: str = await self.pool.execute(_PURGE_EXPIRED, limit)
        return int(status.split()[-1])
