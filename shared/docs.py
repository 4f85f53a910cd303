"""Swagger UI and ReDoc served by each service itself, so the docs work with no internet.

FastAPI's default pages load their JavaScript, CSS, favicon (and ReDoc's Google fonts) from
public CDNs; on a machine without internet access `/docs` is then a blank page. The assets
come instead from the `fastapi-offline` wheel (pinned in pyproject.toml: Swagger UI 5.32.6,
Apache-2.0; ReDoc 2.x standalone, MIT), mounted under `<docs_url>/assets`. We use only its
static files; the pages themselves are FastAPI's own HTML pointed at those files.

The pages also carry a Content-Security-Policy that confines every fetch to the service
itself: ReDoc's bundle, for one, shows a logo from its vendor's CDN, and the browser now never
asks for it. (The inline script that starts each page is FastAPI's own, hence 'unsafe-inline'.)

Whether the pages (and the OpenAPI document) are served at all is `Settings.docs_exposed`:
on outside production, off in production unless `EXPOSE_DOCS=true`.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
"""swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png."""

LOCAL_ONLY = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
        "worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'"
    )
}


def install_docs(app: FastAPI, *, openapi_url: str, docs_url: str, redoc_url: str) -> None:
    """Serve Swagger UI at `docs_url` and ReDoc at `redoc_url`, both from local assets."""
    assets = f"{docs_url.rstrip('/')}/assets"
    app.mount(assets, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets}/favicon.png",
            oauth2_redirect_url=None,
            # No badge that would ask the public validator about our document.
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
        )
        page.headers.update(LOCAL_ONLY)
        return page

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{assets}/favicon.png",
            with_google_fonts=False,
        )
        page.headers.update(LOCAL_ONLY)
        return page
