"""Fixtures for integration tests that publish and inspect rows themselves.

Both follow whatever `base_settings` the requesting test sees, so a package or module that
moves to a vhost of its own (see `make_vhost`) gets a publisher on that vhost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.messaging.publisher import Publisher
from shared.settings import Settings


@pytest.fixture(scope="module")
async def engine(base_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(base_settings.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def publisher(base_settings: Settings) -> AsyncIterator[Publisher]:
    publisher = Publisher(base_settings, connection_name="test-publisher")
    await publisher.connect()
    yield publisher
    await publisher.close()
