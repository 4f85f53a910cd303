"""The template service's errors, and the one mapping from render failures to HTTP."""

from __future__ import annotations

from shared.errors import AppError, Conflict, NotFound
from shared.rendering import MissingVariables, RenderError, TemplateSyntaxInvalid
from shared.template_client import TemplateNotFound

__all__ = ["TemplateExists", "TemplateNotFound", "VersionNotFound", "render_error"]


class TemplateExists(Conflict):
    status_code, code, message = 409, "template_exists", "a template with this code exists"


class VersionNotFound(NotFound):
    status_code, code, message = 404, "template_version_not_found", "no such template version"


def render_error(exc: RenderError) -> AppError:
    """422 with a stable code; missing variables and syntax errors name every field."""
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
