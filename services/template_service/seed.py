"""The demo's templates, created idempotently by `make run` (a template that exists, even
soft-deleted, is left as it is): `welcome` (email and push, locale `en`, transactional) and
`newsletter` (email, `marketing`: it carries a one-click unsubscribe link)."""

from __future__ import annotations

from typing import Any

from services.template_service import repository as repo
from services.template_service.catalog import TemplateCatalog, TemplateRenderer
from services.template_service.errors import TemplateExists
from services.template_service.schemas import TemplateCreate
from services.template_service.settings import template_settings
from shared.db import create_engine, create_session_factory, session_scope
from shared.settings import Settings

WELCOME_EMAIL = TemplateCreate(
    code="welcome",
    channel="email",
    name="Welcome",
    description="Sent when a user signs up.",
    locale="en",
    subject="Welcome, {{ name }}!",
    text_body="Hi {{ name }},\n\nWelcome aboard. Get started here: {{ link }}\n",
    html_body=(
        '<p>Hi {{ name }},</p>\n<p>Welcome aboard. <a href="{{ link }}">Get started</a>.</p>\n'
    ),
)

WELCOME_PUSH = TemplateCreate(
    code="welcome",
    channel="push",
    name="Welcome",
    description="Sent when a user signs up.",
    locale="en",
    title="Welcome, {{ name }}!",
    body="Hi {{ name }}, tap to get started.",
    data={"link": "{{ link }}"},
)

NEWSLETTER_EMAIL = TemplateCreate(
    code="newsletter",
    channel="email",
    name="Newsletter",
    description="News for everyone who has not unsubscribed.",
    category="marketing",
    locale="en",
    subject="News for {{ name }}",
    text_body="Hi {{ name }},\n\n{{ news }}\n",
    html_body="<p>Hi {{ name }},</p>\n<p>{{ news }}</p>\n",
)


async def seed_demo(settings: Settings) -> dict[str, Any]:
    service_settings = template_settings(settings)
    engine = create_engine(service_settings, application_name="template_service-seed")
    renderer = TemplateRenderer.from_settings(service_settings)  # starts only if it creates
    try:
        sessions = create_session_factory(engine)
        catalog = TemplateCatalog(sessions, service_settings, renderer)
        seeded = []
        for body in (WELCOME_EMAIL, WELCOME_PUSH, NEWSLETTER_EMAIL):
            async with session_scope(sessions) as session:
                existing = await repo.get_template(
                    session, body.code, body.channel, include_deleted=True
                )
            created = False
            if existing is None:
                try:
                    await catalog.create(body, created_by=None)
                    created = True
                except TemplateExists:  # a concurrent seed won the race: same outcome
                    pass
            seeded.append({"code": body.code, "channel": body.channel, "created": created})
        return {"templates": seeded}
    finally:
        await renderer.close()
        await engine.dispose()


if __name__ == "__main__":
    import asyncio
    import json

    print(json.dumps(asyncio.run(seed_demo(template_settings()))))
