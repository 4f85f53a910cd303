"""API keys: how clients authenticate to the gateway, and the CLI that creates them.

A key is shown once, when it is created; only its sha256 is stored (a key is 256 random bits,
so a fast hash is enough: there is nothing to brute-force). Verified keys are cached in the
process for a short while so the hot path does not ask PostgreSQL on every request; a revoked
key stops working within that TTL.

    python -m services.api_gateway.api_keys create --name acme [--rate-limit 600] [--scope admin]
    python -m services.api_gateway.api_keys list
    python -m services.api_gateway.api_keys revoke --name acme
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import secrets
import sys
import time
import uuid
from dataclasses import dataclass

import asyncpg

from services.api_gateway.settings import GatewaySettings
from shared.db import asyncpg_dsn

KEY_PREFIX = "ngw_"
_CACHE_MAX = 10_000

SCOPES = ("send", "admin")
"""`send`: the notification API. `admin`: the operator API under `/v1/admin` (dead letters)."""
DEFAULT_SCOPES = ("send",)


@dataclass(frozen=True)
class ApiKey:
    id: uuid.UUID
    name: str
    rate_limit_per_minute: int | None
    scopes: frozenset[str] = frozenset(DEFAULT_SCOPES)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


_SELECT_BY_HASH = """
SELECT id, name, rate_limit_per_minute, scopes FROM api_gateway.api_keys
 WHERE key_hash = $1 AND revoked_at IS NULL
"""

_INSERT = """
INSERT INTO api_gateway.api_keys (id, name, key_hash, key_prefix, rate_limit_per_minute, scopes)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (key_hash) DO NOTHING
RETURNING id
"""

_SET_SCOPES = "UPDATE api_gateway.api_keys SET scopes = $2 WHERE key_hash = $1"


class ApiKeyStore:
    """Looks keys up by hash, with a small in-process TTL cache (misses are cached too, so a
    client hammering with a bad key costs no database round trips)."""

    def __init__(self, pool: asyncpg.Pool, *, cache_ttl_seconds: float) -> None:
        self.pool = pool
        self.ttl = cache_ttl_seconds
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    async def verify(self, raw: str) -> ApiKey | None:
        digest = hash_key(raw)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self.pool.fetchrow(_SELECT_BY_HASH, digest)
        key = (
            ApiKey(
                id=row["id"],
                name=row["name"],
                rate_limit_per_minute=row["rate_limit_per_minute"],
                scopes=frozenset(row["scopes"]),
            )
            if row is not None
            else None
        )
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[digest] = (now + self.ttl, key)
        return key


async def store_key(
    conn: asyncpg.Connection | asyncpg.Pool,
    raw: str,
    *,
    name: str,
    rate_limit_per_minute: int | None = None,
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
) -> bool:
    """Store a key's hash; False if that key already exists (so seeding is idempotent)."""
    inserted = await conn.fetchval(
        _INSERT, uuid.uuid4(), name, hash_key(raw), raw[:12], rate_limit_per_minute, list(scopes)
    )
    return inserted is not None


async def set_scopes(
    conn: asyncpg.Connection | asyncpg.Pool, raw: str, scopes: tuple[str, ...]
) -> None:
    """Give an existing key exactly these scopes (the seed upgrades the demo key with it)."""
    await conn.execute(_SET_SCOPES, hash_key(raw), list(scopes))


# --- CLI -------------------------------------------------------------------------------


async def _create(
    settings: GatewaySettings, name: str, rate_limit: int | None, scopes: tuple[str, ...]
) -> str:
    raw = generate_key()
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await store_key(conn, raw, name=name, rate_limit_per_minute=rate_limit, scopes=scopes)
    finally:
        await conn.close()
    return raw


async def _list(settings: GatewaySettings) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT name, key_prefix, rate_limit_per_minute, scopes, created_at, revoked_at"
            " FROM api_gateway.api_keys ORDER BY created_at"
        )
        return rows
    finally:
        await conn.close()


async def _revoke(settings: GatewaySettings, name: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        status: str = await conn.execute(
            "UPDATE api_gateway.api_keys SET revoked_at = now()"
            " WHERE name = $1 AND revoked_at IS NULL",
            name,
        )
        return int(status.split()[-1])
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.api_gateway.api_keys")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--name", required=True)
    create.add_argument("--rate-limit", type=int, default=None, help="requests per minute")
    create.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        help="what the key may do (repeatable; default: send)",
    )
    commands.add_parser("list", help="list keys (names and prefixes, never the keys)")
    revoke = commands.add_parser("revoke", help="revoke every active key with this name")
    revoke.add_argument("--name", required=True)
    args = parser.parse_args(argv)

    settings = GatewaySettings()
    try:
        return _run(parser, args, settings)
    except (OSError, asyncpg.PostgresError) as exc:
        print(
            f"api_keys: cannot use PostgreSQL ({type(exc).__name__}: {exc}); "
            "is it running and migrated (make migrate)?",
            file=sys.stderr,
        )
        return 1


def _run(
    parser: argparse.ArgumentParser, args: argparse.Namespace, settings: GatewaySettings
) -> int:
    if args.command == "create":
        if args.rate_limit is not None and args.rate_limit < 1:
            parser.error("--rate-limit must be at least 1")
        scopes = tuple(dict.fromkeys(args.scope or DEFAULT_SCOPES))
        raw = asyncio.run(_create(settings, args.name, args.rate_limit, scopes))
        print(f"API key for {args.name!r} (store it now; it is not shown again):", file=sys.stderr)
        print(raw)
    elif args.command == "list":
        for row in asyncio.run(_list(settings)):
            state = "revoked" if row["revoked_at"] else "active"
            limit = row["rate_limit_per_minute"] or "default"
            scopes = ",".join(row["scopes"])
            print(f"{row['name']}\t{row['key_prefix']}...\t{limit}/min\t{scopes}\t{state}")
    else:
        count = asyncio.run(_revoke(settings, args.name))
        print(f"revoked {count} key(s) named {args.name!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
