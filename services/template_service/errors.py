"""The template service's errors, and the one mapping from render failures to HTTP."""

from __future__ import annotations

from shared.errors import AppError, Conflict, NotFound
from shared.rendering import MissingVariables, RenderError, TemplateSyntaxInvalid, UnsafeLink
from shared.template_client import TemplateNotFound

__all__ = ["RenderBusy", "TemplateExists", "TemplateNotFound", "VersionNotFound", "render_error"]


class TemplateExists(Conflict):
    status_code, code, message = 409, "template_exists", "a template with this code exists"


class VersionNotFound(NotFound):
    status_code, code, message = 404, "template_version_not_found", "no such template version"


class RenderBusy(AppError):
    status_code, code, message = 503, "render_busy", "every template renderer is busy"

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})


def render_error(exc: RenderError) -> AppError:
    """422 with a stable code; missing variables, unsafe links and syntax errors name every
    field."""
    if isinstance(exc, UnsafeLink):
        return AppError(
            exc.message,
            code=exc.code,
            status_code=422,
            details=[
                {"field": f"variables.{n}", "message": "must be an http, https or mailto URL"}
                for n in exc.names
            ],
        )
    if isinstance(exc, MissingVariables):
        return AppError(
            exc.message,
            code=exc.code,
            status_code=422,
            details=[{"field": f"variables.{n}", "message": "missing"} for n in exc.names],
        )
    if isinstance(exc, TemplateSyntaxInvalid):
        return AppError(
            exc.message,
            code=exc.code,
            status_code=422,
            details=[{"field": exc.field, "message": f"line {exc.line}: {exc.reason}"}],
        )
    return AppError(exc.message, code=exc.code, status_code=422)
