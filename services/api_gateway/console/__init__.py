"""The operator console (`/console`) and the operator API (`/v1/admin`), served by the gateway.

- `admin_api.py`: the JSON operator API (dead letters), for the console's users, the CLI and
  scripts;
- `pages.py`: the server-rendered pages (Jinja2 in `templates/`, CSS and one small ES module
  in `static/`);
- `resources.py`: what the lifespan creates for both (clients, store, overview sampler);
- `store.py`: the SQL; `dead_letters.py`, `upstream.py`: the calls to the workers and to the
  user and template services; `overview.py`: live figures and chart geometry.

Who may use any of it is `services/api_gateway/operators.py`.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.api_gateway.console import admin_api, dead_letter_pages, pages, template_pages
from services.api_gateway.console.web import STATIC_URL, static_files

__all__ = ["STATIC_URL", "routers", "static_files"]


def routers() -> list[APIRouter]:
    """The operator API and every console page, for the gateway app to include."""
    return [admin_api.router, pages.router, dead_letter_pages.router, template_pages.router]
