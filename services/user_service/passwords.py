"""Password hashing with Argon2id (pwdlib) and the strength check, always off the event loop.

One hash costs ~90 ms of CPU and 64 MiB of memory with the recommended parameters. Run on the
event loop it would stall every other request, so each hash and verify runs in a worker thread;
and at most `PASSWORD_HASH_CONCURRENCY` of them run at once, so a burst of registrations or
logins waits its turn instead of exhausting memory. Unknown emails are verified against a dummy
hash, so a login takes as long whether or not the account exists.

Strength: zxcvbn estimates how many guesses a password would take, knowing common passwords,
words, names, keyboard patterns and the user's own name and email; a score below 3 of 4
("safely unguessable: moderate protection from offline attack") is refused with zxcvbn's
reason. Only the first 72 characters are scored (zxcvbn's own bound; its cost grows steeply
with length), and the check shares the hashing bound since it can take a few tens of ms.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from zxcvbn import zxcvbn

from services.user_service.settings import UserServiceSettings
from shared.errors import ValidationFailed

MIN_SCORE = 3
SCORED_CHARACTERS = 72

T = TypeVar("T")


def password_hash_for(profile: str) -> PasswordHash:
    if profile == "fast":
        # For test suites only: a valid Argon2id hash at a fraction of the cost.
        return PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
    return PasswordHash.recommended()


def weakness(password: str, user_inputs: Sequence[str] = ()) -> str | None:
    """Why the password is too easy to guess, or None if it is strong enough. `user_inputs`
    (the name, the email) and each word in them count as known to an attacker."""
    words = [w for text in user_inputs for w in re.split(r"[^\w]+", text.lower()) if len(w) > 2]
    known = [*user_inputs, *words]
    result = zxcvbn(password[:SCORED_CHARACTERS], user_inputs=known)
    if result["score"] >= MIN_SCORE:
        return None
    feedback = result["feedback"]
    reasons = [feedback["warning"], *feedback["suggestions"]]
    reason = " ".join(r for r in reasons if r) or "It would be guessed quickly."
    return f"too easy to guess: {reason}"


def weak_password(reason: str) -> ValidationFailed:
    return ValidationFailed(
        "the password is too weak",
        code="weak_password",
        details=[{"field": "password", "message": reason}],
    )


@dataclass
class Passwords:
    hasher: PasswordHash
    concurrency: int = 4
    _dummy_hash: str | None = field(default=None, repr=False)
    _slots: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.concurrency)

    @classmethod
    def from_settings(cls, settings: UserServiceSettings) -> Passwords:
        return cls(
            password_hash_for(settings.password_hash_profile),
            concurrency=settings.password_hash_concurrency,
        )

    async def _run(self, work: Callable[[], T]) -> T:
        async with self._slots:
            return await asyncio.to_thread(work)

    async def check_strength(self, password: str, user_inputs: Sequence[str] = ()) -> None:
        """422 `weak_password`, naming the reason, if the password is too easy to guess."""
        reason = await self._run(partial(weakness, password, tuple(user_inputs)))
        if reason is not None:
            raise weak_password(reason)

    async def hash(self, password: str) -> str:
        return await self._run(partial(self.hasher.hash, password))

    async def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """`(valid, new_hash)`: `new_hash` is set when the stored hash used older parameters
        and should be replaced."""
        return await self._run(partial(self.hasher.verify_and_update, password, password_hash))

    async def prepare(self) -> None:
        """Make the dummy hash at startup, so the first unknown-email login is not slower."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("not-a-real-password")

    async def burn(self, password: str) -> None:
        """Spend one verify's worth of time, for logins whose email matched no account."""
        await self.prepare()
        assert self._dummy_hash is not None
        await self._run(partial(self.hasher.verify, password, self._dummy_hash))
