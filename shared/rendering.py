"""The one template renderer: Jinja2's sandbox, strict about undefined variables.

The template service, the gateway (to check variables before accepting) and both workers render
with this module, so a template that previews correctly renders the same in delivery.
HTML fields are autoescaped; text fields are not. A render either produces every field or
raises: nothing renders half.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

MAX_OUTPUT_CHARS = 256 * 1024
MAX_RANGE = 10_000


class RenderError(Exception):
    code = "template_render_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingVariables(RenderError):
    code = "missing_variables"

    def __init__(self, names: list[str]) -> None:
        super().__init__("missing variables: " + ", ".join(names))
        self.names = names


class TemplateSyntaxInvalid(RenderError):
    code = "template_syntax_error"

    def __init__(self, field: str, line: int | None, message: str) -> None:
        super().__init__(f"{field}: line {line}: {message}")
        self.field = field
        self.line = line


class _Sandbox(SandboxedEnvironment):
    """The stock sandbox with a smaller `range` and an output budget."""

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if __obj is range and args and any(isinstance(a, int) and abs(a) > MAX_RANGE for a in args):
            raise SecurityError(f"range larger than {MAX_RANGE} is not allowed")
        return super().call(__context, __obj, *args, **kwargs)


_TEXT_ENV = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_HTML_ENV = _Sandbox(undefined=StrictUndefined, autoescape=True, keep_trailing_newline=True)


def _env(html: bool) -> SandboxedEnvironment:
    return _HTML_ENV if html else _TEXT_ENV


@lru_cache(maxsize=4096)
def _parse(source: str) -> nodes.Template:
    return _TEXT_ENV.parse(source)


@lru_cache(maxsize=4096)
def _compile(source: str, html: bool) -> Any:
    return _env(html).from_string(source)


def variables_used(source: str) -> set[str]:
    """The variables a template reads, found by parsing (never typed in by a person)."""
    return set(meta.find_undeclared_variables(_parse(source)))


def validate(fields: Mapping[str, str | None]) -> None:
    """Raise `TemplateSyntaxInvalid` naming the field and line of the first syntax error."""
    for name, source in fields.items():
        if source is None:
            continue
        try:
            _parse(source)
        except TemplateSyntaxError as exc:
            raise TemplateSyntaxInvalid(name, exc.lineno, exc.message or "syntax error") from exc


@dataclass(frozen=True)
class TemplateFields:
    """A version's renderable fields; `html_fields` are autoescaped."""

    fields: Mapping[str, str | None]
    html_fields: frozenset[str] = frozenset({"html_body"})

    def variables(self) -> set[str]:
        found: set[str] = set()
        for source in self.fields.values():
            if source:
                found |= variables_used(source)
        return found


def render(template: TemplateFields, variables: Mapping[str, Any]) -> dict[str, str | None]:
    """Render every field or raise: `MissingVariables` (all names) or `RenderError`."""
    validate(template.fields)
    missing = sorted(template.variables() - set(variables))
    if missing:
        raise MissingVariables(missing)
    rendered: dict[str, str | None] = {}
    for name, source in template.fields.items():
        if source is None:
            rendered[name] = None
            continue
        rendered[name] = _render_one(source, name in template.html_fields, variables)
    return rendered


def _render_one(source: str, html: bool, variables: Mapping[str, Any]) -> str:
    compiled = _compile(source, html)
    size = 0
    parts: list[str] = []
    try:
        for chunk in compiled.generate(**variables):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise RenderError(f"rendered output exceeds {MAX_OUTPUT_CHARS} characters")
            parts.append(chunk)
    except UndefinedError as exc:
        raise MissingVariables([str(exc.message or "unknown")]) from exc
    except SecurityError as exc:
        raise RenderError(f"template tried something unsafe: {exc}") from exc
    except RenderError:
        raise
    except Exception as exc:  # a template error of any kind fails the render, never the worker
        raise RenderError(f"render failed: {type(exc).__name__}: {exc}") from exc
    return "".join(parts)
