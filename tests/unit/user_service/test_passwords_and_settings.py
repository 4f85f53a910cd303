"""Password hashing profiles, the login limiter's keys and settings widening, without I/O."""

from __future__ import annotations

import threading

from pwdlib import PasswordHash
from redis.asyncio import Redis

from services.user_service.passwords import Passwords, password_hash_for
from services.user_service.rate_limit import LoginLimiter
from services.user_service.settings import UserServiceSettings, user_service_settings
from shared.settings import Settings


def test_fast_profile_hashes_are_argon2id_and_verify() -> None:
    fast = password_hash_for("fast")
    hashed = fast.hash("s3cret-password")
    assert hashed.startswith("$argon2id$") and "s3cret" not in hashed
    assert fast.verify("s3cret-password", hashed)
    assert not fast.verify("other-password", hashed)


def test_recommended_profile_upgrades_a_fast_hash_on_verify() -> None:
    hashed = password_hash_for("fast").hash("s3cret-password")
    valid, updated = PasswordHash.recommended().verify_and_update("s3cret-password", hashed)
    assert valid and updated is not None and updated != hashed


def test_plain_settings_widen_keeping_their_values() -> None:
    base = Settings(_env_file=None, db_pool_size=3, jwt_secret="k" * 40)
    widened = user_service_settings(base)
    assert isinstance(widened, UserServiceSettings)
    assert widened.db_pool_size == 3
    assert widened.jwt_secret.get_secret_value() == "k" * 40
    assert widened.password_hash_profile == "recommended"
    assert user_service_settings(widened) is widened


def test_limiter_keys_do_not_reveal_the_email() -> None:
    limiter = LoginLimiter(Redis(), "p:", max_attempts=3, window_seconds=60)  # never connects
    key = limiter.key("Ada@Example.com", "10.0.0.1")
    assert key.startswith("p:login_attempts:") and "ada" not in key.lower()
    assert key == limiter.key(" ada@example.com ", "10.0.0.1")
    assert key != limiter.key("ada@example.com", "10.0.0.2")


class _RecordingHasher:
    """Wraps a real hasher and notes which thread each call ran on."""

    def __init__(self) -> None:
        self.inner = password_hash_for("fast")
        self.threads: list[int] = []

    def hash(self, password: str) -> str:
        self.threads.append(threading.get_ident())
        return self.inner.hash(password)

    def verify(self, password: str, hashed: str) -> bool:
        self.threads.append(threading.get_ident())
        return self.inner.verify(password, hashed)

    def verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        self.threads.append(threading.get_ident())
        return self.inner.verify_and_update(password, hashed)


async def test_hashing_and_verifying_never_run_on_the_event_loop() -> None:
    recorder = _RecordingHasher()
    passwords = Passwords(recorder)  # type: ignore[arg-type]
    hashed = await passwords.hash("s3cret-password")
    assert (await passwords.verify("s3cret-password", hashed))[0]
    await passwords.burn("unknown-user-password")
    loop_thread = threading.get_ident()
    assert len(recorder.threads) == 4  # hash, verify, dummy hash, dummy verify
    assert loop_thread not in recorder.threads
