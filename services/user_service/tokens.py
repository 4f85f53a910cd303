"""The user service's token material: its signing keys, access tokens and refresh tokens.

Access tokens are JWTs signed with the service's Ed25519 key (`kid` in the header) and live
`ACCESS_TOKEN_TTL_SECONDS` (15 minutes): short, because only the version check can end one
early. Refresh tokens are opaque random strings; the database keeps only their SHA-256, so a
leaked table cannot be replayed.

Where the private key comes from: `JWT_PRIVATE_KEY` (PEM) or `JWT_PRIVATE_KEY_FILE`, required
in production. Elsewhere, when neither is set, a key is generated once into
`.run/user-service-signing-key-<USER_SERVICE_PORT>.pem` (atomically, like the FCM dev service
account), so restarts of `make run` keep accepting the tokens they issued.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.user_service.settings import UserServiceSettings
from shared.auth import Role
from shared.files import write_once
from shared.token_keys import (
    ALGORITHM,
    StaticKeys,
    key_id,
    parse_private_key,
    parse_public_keys,
    private_key_pem,
    public_jwk,
)

ROOT = Path(__file__).resolve().parents[2]


class SigningKeyError(ValueError):
    """The configured key material cannot be used (the message names the variable)."""


@dataclass(frozen=True)
class SigningKeys:
    """The current private key and the public keys still published after a rotation."""

    private_key: Ed25519PrivateKey
    previous: tuple[Ed25519PublicKey, ...] = ()

    @property
    def kid(self) -> str:
        return key_id(self.private_key.public_key())

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        keys = {key_id(key): key for key in self.previous}
        keys[self.kid] = self.private_key.public_key()
        return keys

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [public_jwk(key) for key in self.public_keys().values()]}

    def key_source(self) -> StaticKeys:
        return StaticKeys(self.public_keys())


def dev_key_path(settings: UserServiceSettings) -> Path:
    return ROOT / ".run" / f"user-service-signing-key-{settings.user_service_port}.pem"


def load_signing_keys(settings: UserServiceSettings) -> SigningKeys:
    """The configured keys (see the module docstring); `SigningKeyError` names what is wrong."""
    if settings.jwt_private_key is not None:
        source, pem = "JWT_PRIVATE_KEY", settings.jwt_private_key.get_secret_value().encode()
    else:
        if settings.jwt_private_key_file is not None:
            source, path = "JWT_PRIVATE_KEY_FILE", Path(settings.jwt_private_key_file)
        elif settings.environment == "production":
            raise SigningKeyError("JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE is required")
        else:
            source, path = "the development key", dev_key_path(settings)
            write_once(path, private_key_pem(Ed25519PrivateKey.generate()))
        pem = _read(source, path)
    try:
        private_key = parse_private_key(pem)
    except ValueError as exc:
        raise SigningKeyError(f"{source} {exc}") from None
    previous: list[Ed25519PublicKey] = []
    if settings.jwt_previous_public_keys_file is not None:
        source = "JWT_PREVIOUS_PUBLIC_KEYS_FILE"
        bundle = _read(source, Path(settings.jwt_previous_public_keys_file))
        try:
            previous = parse_public_keys(bundle)
        except ValueError as exc:
            raise SigningKeyError(f"{source} {exc}") from None
    return SigningKeys(private_key, tuple(previous))


def _read(source: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{source}: cannot read {path} ({exc.strerror})") from None


def issue_access_token(
    keys: SigningKeys,
    settings: UserServiceSettings,
    *,
    user_id: uuid.UUID,
    role: Role,
    version: int,
) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds."""
    now = int(time.time())
    ttl = settings.access_token_ttl_seconds
    claims = {"sub": str(user_id), "role": role, "ver": version, "iat": now, "exp": now + ttl}
    token = jwt.encode(claims, keys.private_key, algorithm=ALGORITHM, headers={"kid": keys.kid})
    return token, ttl


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
