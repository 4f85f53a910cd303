"""A notification's content as it was sent: its pinned template version rendered with its
variables, by the same renderer the workers use (`shared.rendering`).

The variables come from the accepted message kept on the status row (`payload`); the version
is fetched over the internal API, which serves pinned versions even of a deleted template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.errors import AppError
from shared.rendering import RenderError
from shared.template_client import TemplateClient


@dataclass(frozen=True)
class Content:
    fields: dict[str, Any] | None
    note: str | None = None


async def rendered_content(versions: TemplateClient, notification: dict[str, Any]) -> Content:
    variables = notification.get("variables")
    version = notification.get("template_version")
    if variables is None or version is None:
        return Content(
            None,
            "Not kept: the notification was skipped, or accepted before variables were stored.",
        )
    try:
        template = await versions.get_version(
            notification["template_code"],
            notification["notification_type"],
            notification.get("locale"),
            int(version),
        )
        return Content(template.render(variables))
    except AppError as exc:
        return Content(None, f"Cannot render: {exc.message}")
    except RenderError as exc:
        return Content(None, f"Cannot render: {exc}")
