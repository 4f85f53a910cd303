"""Everything the console and the operator API use, created once in the gateway's lifespan and
kept on `app.state.console`."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.api_gateway.console.dead_letters import DeadLetterClient
from services.api_gateway.console.overview import Overview
from services.api_gateway.console.store import ConsoleStore
from services.api_gateway.console.upstream import Upstream
from shared.settings import Settings
from shared.template_client import TemplateClient


@dataclass
class Console:
    settings: Settings
    store: ConsoleStore
    dead_letters: DeadLetterClient
    upstream: Upstream
    versions: TemplateClient
    """Pinned versions over the internal API, to render a notification as it was sent."""
    overview: Overview

    @classmethod
    def open(cls, settings: Settings, pool: asyncpg.Pool) -> Console:
        return cls(
            settings=settings,
            store=ConsoleStore(pool),
            dead_letters=DeadLetterClient(settings),
            upstream=Upstream(settings),
            versions=TemplateClient(settings),
            overview=Overview(settings),
        )

    async def aclose(self) -> None:
        await self.dead_letters.aclose()
        await self.upstream.aclose()
        await self.versions.aclose()
        await self.overview.aclose()
