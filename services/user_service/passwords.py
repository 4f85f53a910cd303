"""Password hashing with Argon2id (pwdlib), always off the event loop.

One hash costs ~90 ms of CPU with the recommended parameters: run on the event loop it would
stall every other request, so each hash and verify runs in a worker thread. Unknown emails are
verified against a dummy hash, so a login takes as long whether or not the account exists.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from services.user_service.settings import UserServiceSettings


def password_hash_for(profile: str) -> PasswordHash:
    if profile == "fast":
        # For test suites only: a valid Argon2id hash at a fraction of the cost.
        return PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
    return PasswordHash.recommended()


@dataclass
class Passwords:
    hasher: PasswordHash
    _dummy_hash: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: UserServiceSettings) -> Passwords:
        return cls(password_hash_for(settings.password_hash_profile))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """`(valid, new_hash)`: `new_hash` is set when the stored hash used older parameters
        and should be replaced."""
        return await asyncio.to_thread(self.hasher.verify_and_update, password, password_hash)

    async def prepare(self) -> None:
        """Make the dummy hash at startup, so the first unknown-email login is not slower."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("not-a-real-password")

    async def burn(self, password: str) -> None:
        """Spend one verify's worth of time, for logins whose email matched no account."""
        await self.prepare()
        assert self._dummy_hash is not None
        await asyncio.to_thread(self.hasher.verify, password, self._dummy_hash)
