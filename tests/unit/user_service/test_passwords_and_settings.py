"""Password hashing profiles and strength, the throttle's keys and settings widening, without
I/O."""

from __future__ import annotations

import asyncio
import threading

import pytest
from pwdlib import PasswordHash
from redis.asyncio import Redis

from services.user_service.passwords import Passwords, password_hash_for, weakness
from services.user_service.rate_limit import LoginThrottle
from services.user_service.settings import UserServiceSettings, user_service_settings
from shared.errors import ValidationFailed
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
    base = Settings(_env_file=None, db_pool_size=3, jwt_private_key_file="/keys/k.pem")
    widened = user_service_settings(base)
    assert isinstance(widened, UserServiceSettings)
    assert widened.db_pool_size == 3
    assert widened.jwt_private_key_file == "/keys/k.pem"
    assert widened.password_hash_profile == "recommended"
    assert user_service_settings(widened) is widened


def test_throttle_keys_do_not_reveal_the_email_or_address() -> None:
    throttle = LoginThrottle(Redis(), "p:", UserServiceSettings(_env_file=None))  # no I/O
    key = throttle.account_key("Ada@Example.com")
    assert key.startswith("p:login_account:") and "ada" not in key.lower()
    assert key == throttle.account_key(" ada@example.com ")
    known = throttle.known_key("ada@example.com", "10.0.0.1")
    assert "10.0.0.1" not in known and known != throttle.known_key("ada@example.com", "10.0.0.2")
    assert "10.0.0.1" not in throttle.attempts_key("10.0.0.1")


@pytest.mark.parametrize(
    "password", ["password", "        ", "12345678", "qwertyuiop", "aaaaaaaaaaaa", "Password1!"]
)
def test_common_and_patterned_passwords_are_weak(password: str) -> None:
    assert weakness(password) is not None


def test_the_users_own_name_or_email_is_weak() -> None:
    inputs = ["Ada Lovelace", "ada.lovelace@example.com"]
    assert weakness("ada.lovelace@example.com") is None  # strong, for someone else
    for password in ("ada.lovelace@example.com", "Ada Lovelace", "lovelace2024"):
        assert weakness(password, inputs) is not None, password


@pytest.mark.parametrize("password", ["correct-horse-battery", "Tr0ub4dor&3-x", "a" * 100 + "!"])
def test_strength_is_scored_on_the_first_72_characters(password: str) -> None:
    strong = weakness(password) is None
    assert strong == (password != "a" * 100 + "!")


async def test_a_weak_password_is_refused_with_the_reason() -> None:
    passwords = Passwords(password_hash_for("fast"))
    with pytest.raises(ValidationFailed) as refused:
        await passwords.check_strength("password")
    assert refused.value.code == "weak_password" and refused.value.status_code == 422
    assert refused.value.details == [
        {
            "field": "password",
            "message": "too easy to guess: This is a top-10 common password. "
            "Add another word or two. Uncommon words are better.",
        }
    ]


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


class _CountingHasher(_RecordingHasher):
    """Notes the most hashes that ever ran at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def hash(self, password: str) -> str:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().hash(password)
        finally:
            with self.lock:
                self.running -= 1


async def test_hashing_runs_under_the_concurrency_bound() -> None:
    counting = _CountingHasher()
    passwords = Passwords(counting, concurrency=2)  # type: ignore[arg-type]
    await asyncio.gather(*(passwords.hash(f"password-{n}") for n in range(12)))
    assert counting.most <= 2
