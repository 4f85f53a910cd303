"""Topics, their subscribers and broadcasts as the gateway writes and reads them (raw SQL).

A topic send never fans out in its request: it writes one `broadcasts` row (the send's body,
the subscriber count, and the idempotency record completed in the same statement). The fan-out
(`broadcasts.py`) then leases the row, takes the next chunk of subscribers after its cursor,
sends each through the ordinary send path, and moves the cursor: each chunk is its own
transactions, and a lease that lapses (a crashed gateway) lets another gateway go on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.errors import Conflict, NotFound

_TOPIC_VIEW = """key, description, created_at, updated_at,
       (SELECT count(*) FROM api_gateway.topic_subscribers s
         WHERE s.api_key_id = t.api_key_id AND s.topic_key = t.key) AS subscribers"""

_PUT = f"""
INSERT INTO api_gateway.topics AS t (api_key_id, key, description)
VALUES ($1, $2, $3)
ON CONFLICT (api_key_id, key) DO UPDATE SET description = EXCLUDED.description, updated_at = now()
RETURNING {_TOPIC_VIEW}
"""

# The statement does not see its own writes: the count after is the count before, moved.
_SUBSCRIBE = """
WITH topic AS (
    SELECT key FROM api_gateway.topics WHERE api_key_id = $1 AND key = $2
), before AS (
    SELECT count(*) AS n FROM api_gateway.topic_subscribers
     WHERE api_key_id = $1 AND topic_key = $2
), changed AS (
    INSERT INTO api_gateway.topic_subscribers (api_key_id, topic_key, user_id)
    SELECT DISTINCT $1::uuid, topic.key, u FROM topic, unnest($3::uuid[]) AS u
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM topic) AS found, (SELECT count(*) FROM changed) AS changed,
       (SELECT n FROM before) + (SELECT count(*) FROM changed) AS subscribers
"""

_UNSUBSCRIBE = """
WITH topic AS (
    SELECT key FROM api_gateway.topics WHERE api_key_id = $1 AND key = $2
), before AS (
    SELECT count(*) AS n FROM api_gateway.topic_subscribers
     WHERE api_key_id = $1 AND topic_key = $2
), changed AS (
    DELETE FROM api_gateway.topic_subscribers s USING topic
     WHERE s.api_key_id = $1 AND s.topic_key = topic.key AND s.user_id = ANY($3::uuid[])
    RETURNING 1
)
SELECT (SELECT count(*) FROM topic) AS found, (SELECT count(*) FROM changed) AS changed,
       (SELECT n FROM before) - (SELECT count(*) FROM changed) AS subscribers
"""

_BROADCAST = """
WITH counted AS (
    SELECT t.key,
           (SELECT count(*) FROM api_gateway.topic_subscribers s
             WHERE s.api_key_id = $1 AND s.topic_key = t.key)::int AS total,
           now() AS at,
           to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') AS at_text
      FROM api_gateway.topics t WHERE t.api_key_id = $1 AND t.key = $2
), {claim_cte}, ins AS (
    INSERT INTO api_gateway.broadcasts
           (id, api_key_id, topic_key, request, total, created_at, updated_at)
    SELECT $3, $1, c.key, $4::jsonb, c.total, c.at, c.at FROM counted c, claim
    RETURNING id
)
SELECT (SELECT count(*) FROM counted) AS found, (SELECT count(*) FROM ins) AS inserted,
       c.total, c.at_text AS created_at
  FROM (SELECT 1) AS one LEFT JOIN counted c ON true
"""
_BROADCAST_PLAIN = _BROADCAST.format(claim_cte="claim AS (SELECT 1)")
_BROADCAST_CLAIMED = _BROADCAST.format(
    claim_cte="""claim AS (
    UPDATE api_gateway.idempotency_records r
       SET state = 'completed', status_code = 202,
           response = jsonb_set(jsonb_set($5::jsonb, '{data,total}', to_jsonb(c.total)),
                                '{data,created_at}', to_jsonb(c.at_text))
      FROM counted c
     WHERE r.api_key_id = $1 AND r.key = $6 AND r.claim_token = $7 AND r.state = 'pending'
    RETURNING 1
)"""
)

_LEASE = """
UPDATE api_gateway.broadcasts b
   SET lease_until = now() + make_interval(secs => $1), updated_at = now()
 WHERE b.id = (SELECT id FROM api_gateway.broadcasts
                WHERE state = 'fanning_out' AND (lease_until IS NULL OR lease_until < now())
                ORDER BY created_at LIMIT 1
                  FOR UPDATE SKIP LOCKED)
RETURNING b.id, b.api_key_id, b.topic_key, b.request, b.cursor
"""

_CHUNK = """
SELECT user_id FROM api_gateway.topic_subscribers
 WHERE api_key_id = $1 AND topic_key = $2 AND ($3::uuid IS NULL OR user_id > $3::uuid)
 ORDER BY user_id
 LIMIT $4
"""

_ADVANCE = """
UPDATE api_gateway.broadcasts
   SET cursor = $2, fanned_out = fanned_out + $3, not_sent = not_sent + $4,
       lease_until = NULL, updated_at = now()
 WHERE id = $1
"""

_DONE = """
UPDATE api_gateway.broadcasts SET state = 'done', lease_until = NULL, updated_at = now()
 WHERE id = $1
"""

_LET_GO = "UPDATE api_gateway.broadcasts SET lease_until = NULL WHERE id = $1"

_VIEW = """
SELECT b.id, b.topic_key, b.state, b.total, b.fanned_out, b.not_sent, b.created_at,
       b.updated_at,
       COALESCE((SELECT jsonb_object_agg(c.status, c.n)
                   FROM (SELECT status, count(*) AS n FROM api_gateway.notification_statuses
                          WHERE broadcast_id = b.id GROUP BY status) AS c), '{}'::jsonb)
           AS counts
  FROM api_gateway.broadcasts b
 WHERE b.id = $1 AND b.api_key_id = $2
"""

_OPEN = ("queued", "scheduled", "processing", "retrying")


@dataclass(frozen=True)
class Lease:
    """One broadcast's fan-out, held by this gateway for the next chunk."""

    broadcast_id: uuid.UUID
    api_key_id: uuid.UUID
    topic_key: str
    request: dict[str, Any]
    cursor: uuid.UUID | None


def _topic_not_found() -> NotFound:
    return NotFound("no topic with this key", code="topic_not_found")


class TopicStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put(self, api_key_id: uuid.UUID, key: str, description: str | None) -> Any:
        row = await self.pool.fetchrow(_PUT, api_key_id, key, description)
        assert row is not None
        return {**dict(row), "subscribers": int(row["subscribers"])}

    async def subscribe(
        self, api_key_id: uuid.UUID, key: str, user_ids: list[uuid.UUID], *, add: bool
    ) -> dict[str, Any]:
        """Add (or remove) subscribers in one statement; 404 for an unknown topic."""
        row = await self.pool.fetchrow(
            _SUBSCRIBE if add else _UNSUBSCRIBE, api_key_id, key, user_ids
        )
        assert row is not None
        if not row["found"]:
            raise _topic_not_found()
        return {"topic": key, "changed": row["changed"], "subscribers": row["subscribers"]}

    async def create_broadcast(
        self,
        api_key_id: uuid.UUID,
        key: str,
        broadcast_id: uuid.UUID,
        request: dict[str, Any],
        completion: tuple[dict[str, Any], str, uuid.UUID] | None,
    ) -> tuple[int, str]:
        """The broadcast row (and the completed idempotency record: response, key, token);
        its subscriber count and creation time. 404 for an unknown topic."""
        if completion is None:
            row = await self.pool.fetchrow(_BROADCAST_PLAIN, api_key_id, key, broadcast_id, request)
        else:
            row = await self.pool.fetchrow(
                _BROADCAST_CLAIMED, api_key_id, key, broadcast_id, request, *completion
            )
        assert row is not None
        if not row["found"]:
            raise _topic_not_found()
        if not row["inserted"]:
            raise Conflict(
                "a request with this idempotency key is in progress",
                code="request_in_progress",
                headers={"Retry-After": "1"},
            )
        return row["total"], row["created_at"]

    async def lease(self, seconds: float) -> Lease | None:
        row = await self.pool.fetchrow(_LEASE, seconds)
        if row is None:
            return None
        return Lease(row["id"], row["api_key_id"], row["topic_key"], row["request"], row["cursor"])

    async def chunk(self, lease: Lease, size: int) -> list[uuid.UUID]:
        rows = await self.pool.fetch(_CHUNK, lease.api_key_id, lease.topic_key, lease.cursor, size)
        return [r["user_id"] for r in rows]

    async def advance(
        self, broadcast_id: uuid.UUID, cursor: uuid.UUID, sent: int, not_sent: int
    ) -> None:
        await self.pool.execute(_ADVANCE, broadcast_id, cursor, sent, not_sent)

    async def done(self, broadcast_id: uuid.UUID) -> None:
        await self.pool.execute(_DONE, broadcast_id)

    async def let_go(self, broadcast_id: uuid.UUID) -> None:
        await self.pool.execute(_LET_GO, broadcast_id)

    async def view(self, api_key_id: uuid.UUID, broadcast_id: uuid.UUID) -> dict[str, Any]:
        """Progress by outcome. `queued` counts what is still on its way, including the
        subscribers the fan-out has not reached yet; `skipped` includes those it could not
        send to (a deleted user) and cancelled ones; `failed` includes expired ones."""
        row = await self.pool.fetchrow(_VIEW, broadcast_id, api_key_id)
        if row is None:
            raise NotFound("no broadcast with this id", code="broadcast_not_found")
        counts: dict[str, int] = row["counts"]
        waiting = max(row["total"] - row["fanned_out"], 0) if row["state"] != "done" else 0
        return {
            "broadcast_id": str(row["id"]),
            "topic": row["topic_key"],
            "state": row["state"],
            "total": row["total"],
            "fanned_out": row["fanned_out"],
            "queued": sum(counts.get(s, 0) for s in _OPEN) + waiting,
            "delivered": counts.get("delivered", 0),
            "failed": counts.get("failed", 0) + counts.get("expired", 0),
            "skipped": counts.get("skipped", 0) + counts.get("cancelled", 0) + row["not_sent"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }
