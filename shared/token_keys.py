"""The keys that verify access tokens, and the cache of the user service's JWKS.

Only the user service holds a private key, so only it can mint a token; every other service
verifies with the public keys it publishes at `GET /.well-known/jwks.json`. The keys are
Ed25519 (JWS `EdDSA`): small, fast, and without parameters to get wrong. A key's id (`kid`) is
its RFC 7638 thumbprint, so it needs no configuration and changes exactly when the key does.

Rotation: the user service signs with its current key and keeps publishing the previous public
keys until every token they signed has expired. A verifier that meets an unknown `kid` fetches
the JWKS again at once, at most once per `JWKS_REFETCH_MIN_SECONDS` (a stream of made-up kids
cannot turn into a stream of fetches), and otherwise refreshes it every `JWKS_CACHE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.errors import DependencyUnavailable

logger = logging.getLogger("shared.token_keys")

ALGORITHM = "EdDSA"
JWKS_PATH = "/.well-known/jwks.json"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256) of the key."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw(public_key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(_raw(public_key)),
        "kid": key_id(public_key),
        "alg": ALGORITHM,
        "use": "sig",
    }


def parse_jwks(document: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 signing keys of a JWKS by kid; anything else in it is ignored."""
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in document.get("keys", []):
        if not isinstance(entry, Mapping):
            continue
        if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        if entry.get("use", "sig") != "sig" or not isinstance(entry.get("x"), str):
            continue
        try:
            key = Ed25519PublicKey.from_public_bytes(_b64url_decode(entry["x"]))
        except ValueError:
            continue
        keys[key_id(key)] = key  # the thumbprint, not a claimed kid, names the key
    return keys


def parse_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; `ValueError` with a readable reason otherwise."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("must be an Ed25519 key (openssl genpkey -algorithm ed25519)")
    return key


def parse_public_keys(pem_bundle: bytes) -> list[Ed25519PublicKey]:
    """Every Ed25519 public key in a bundle of PEM blocks (an empty bundle is no keys)."""
    marker = b"-----END PUBLIC KEY-----"
    keys = []
    for block in pem_bundle.split(marker):
        if not block.strip():
            continue
        try:
            key = serialization.load_pem_public_key(block.strip() + b"\n" + marker + b"\n")
        except ValueError as exc:
            raise ValueError("holds a block that is not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("holds a public key that is not Ed25519")
        keys.append(key)
    return keys


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class KeySource(Protocol):
    async def key_for(self, kid: str) -> Ed25519PublicKey | None:
        """The public key named `kid`, or None if there is no such key."""


@dataclass(frozen=True)
class StaticKeys:
    """Keys known in the process: the user service verifies with its own keyring."""

    keys: Mapping[str, Ed25519PublicKey]

    async def key_for(self, kid: str) -> Ed25519PublicKey | None:
        return self.keys.get(kid)


@dataclass
class JwksKeys:
    """The user service's JWKS over HTTP, cached (see the module docstring for when it is
    fetched). If the user service cannot be reached, known keys keep working; a token whose
    key was never seen gets 503 `dependency_unavailable`, not a false 401."""

    client: httpx.AsyncClient
    url: str
    cache_seconds: float
    refetch_min_seconds: float
    clock: Callable[[], float] = time.monotonic
    _keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    _fetched_at: float | None = None  # last success: how fresh the keys are
    _attempted_at: float | None = None  # last try: bounds how often we ask
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def key_for(self, kid: str) -> Ed25519PublicKey | None:
        if self._fresh() and kid in self._keys:
            return self._keys[kid]
        async with self._lock:  # one fetch at a time; the others reuse its result
            if self._may_fetch(kid):
                await self._fetch()
        if self._fetched_at is None:
            raise DependencyUnavailable(
                "cannot verify the token: the user service's keys are unavailable",
                headers={"Retry-After": "1"},
            )
        return self._keys.get(kid)

    def _fresh(self) -> bool:
        return self._fetched_at is not None and self.clock() - self._fetched_at < self.cache_seconds

    def _may_fetch(self, kid: str) -> bool:
        now = self.clock()
        if self._attempted_at is not None and now - self._attempted_at < self.refetch_min_seconds:
            return False
        return not self._fresh() or kid not in self._keys

    async def _fetch(self) -> None:
        self._attempted_at = self.clock()
        try:
            response = await self.client.get(self.url)
            response.raise_for_status()
            keys = parse_jwks(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            # Known keys keep working until the user service answers again.
            logger.warning("JWKS fetch from %s failed: %s", self.url, type(exc).__name__)
            return
        self._keys, self._fetched_at = keys, self.clock()
