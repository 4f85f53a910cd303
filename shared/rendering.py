"""The one template renderer: Jinja2's sandbox, strict about undefined variables, on a budget.

The template service, the gateway (to check variables before accepting) and both workers render
with this module, so a template that previews correctly renders the same in delivery.
HTML fields are autoescaped; text fields are not. A render either produces every field or
raises: nothing renders half.

Templates are written by people we only partly trust, and a render runs inside a worker that
must not hang, so every render has a time budget and a size budget:

- time: every loop iteration, call, intercepted operator and output piece checks a deadline;
  a `{% for %}` can only iterate through a guard (inserted into the parsed tree), so nested
  loops and exponential macro recursion stop at the deadline; plain deep recursion hits
  Python's recursion limit first;
- size: `range` is capped, `*`, `**`, `+` and `%` refuse results above the budget before
  computing them, string methods and filters that can blow up (`center`, `replace`, `join`,
  `format`, `indent`, `batch`, `slice`, ...) are checked before they run, `~` results are
  checked, and every piece of output (also inside macros and `{% set %}` blocks) is charged to
  a per-render allowance, so memory stays bounded even when nothing reaches the final output.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes, pass_context
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

MAX_OUTPUT_CHARS = 256 * 1024
MAX_RANGE = 10_000
MAX_RENDER_SECONDS = 0.5
# Output charged across a whole render (every field, captured blocks and macro bodies included).
MAX_TOTAL_CHARS_FACTOR = 4
MAX_INDENT = 64
# An integer result larger than this many bits is refused (`10 ** 10 ** 10` would never end).
MAX_INT_BITS = 4096

DATA_PREFIX = "data."
EMAIL_FIELDS = ("subject", "text_body", "html_body")
PUSH_FIELDS = ("title", "body", "image_url")


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
        self.reason = message


class RenderBudgetExceeded(RenderError):
    """A render ran out of time or size: the template is hostile or badly written."""


# --- the budget -------------------------------------------------------------------------------


@dataclass
class _Budget:
    deadline: float
    max_chars: int
    chars_left: int

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderBudgetExceeded("the template took too long to render")

    def charge(self, chars: int) -> None:
        self.chars_left -= chars
        if self.chars_left < 0:
            raise RenderBudgetExceeded("the template produces too much output")
        self.tick()

    def check_size(self, size: int) -> None:
        if size > self.max_chars:
            raise RenderBudgetExceeded(
                f"the template builds a value larger than {self.max_chars} characters"
            )


_BUDGET: ContextVar[_Budget | None] = ContextVar("render_budget", default=None)


def _budget() -> _Budget | None:
    return _BUDGET.get()


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict | set) else 0


def _int_arg(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --- guards for operators, calls and filters -------------------------------------------------

_FORMAT_NUMBER = re.compile(r"\d+")
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _check_format(budget: _Budget, fmt: str, args: Iterable[Any]) -> None:
    """`'%999999999d' % 1` or `'{:999999999}'.format(1)` allocate before any check could run."""
    if any(int(n) > budget.max_chars for n in _FORMAT_NUMBER.findall(fmt)):
        raise RenderBudgetExceeded("the template formats with a width beyond the budget")
    values = list(args)
    for value in values:
        if abs(_int_arg(value)) > budget.max_chars and "*" in fmt:
            raise RenderBudgetExceeded("the template formats with a width beyond the budget")
    largest = max((len(str(v)) for v in values), default=0)
    placeholders = fmt.count("%") + fmt.count("{")
    budget.check_size(len(fmt) + placeholders * largest)


def _check_replace(budget: _Budget, text: str, old: Any, new: Any) -> None:
    occurrences = text.count(old) if old else len(text) + 1
    budget.check_size(len(text) + occurrences * len(str(new)))


def _check_join(budget: _Budget, separator: str, items: Any) -> Any:
    """Returns the items to join: an iterator is read into a list first (it could only be
    measured by consuming it)."""
    if not isinstance(items, Sized):
        items = list(items)
    budget.check_size(len(separator) * len(items))
    budget.check_size(sum(len(str(i)) for i in items) + len(separator) * len(items))
    return items


def _check_str_method(
    budget: _Budget, owner: str, name: str, args: tuple[Any, ...]
) -> tuple[Any, ...]:
    """Refuses a call that would build a value over the budget; returns the arguments to use."""
    first = args[0] if args else None
    if name in _WIDTH_METHODS:
        budget.check_size(_int_arg(first))
    elif name == "expandtabs":
        budget.check_size(len(owner) + owner.count("\t") * _int_arg(first or 8))
    elif name == "replace" and len(args) >= 2:
        _check_replace(budget, owner, str(args[0]), args[1])
    elif name == "join" and args:
        return (_check_join(budget, owner, first), *args[1:])
    elif name in {"format", "format_map"}:
        values = list(args)
        if name == "format_map" and isinstance(first, Mapping):
            values = list(first.values())
        _check_format(budget, owner, values)
    return args


def _check_binop(budget: _Budget, operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(count, int):
                budget.check_size(len(seq) * max(count, 0))
        both_ints = isinstance(left, int) and isinstance(right, int)
        if both_ints and abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
            raise RenderBudgetExceeded("the template computes a number beyond the budget")
    elif operator == "**":
        both_ints = isinstance(left, int) and isinstance(right, int)
        if both_ints and right > 0 and max(abs(left).bit_length(), 1) * right > MAX_INT_BITS:
            raise RenderBudgetExceeded("the template computes a number beyond the budget")
    elif operator == "+":
        budget.check_size(_sized(left) + _sized(right))
    elif operator == "%" and isinstance(left, str):
        args = right if isinstance(right, tuple) else (right,)
        if isinstance(right, Mapping):
            args = tuple(right.values())
        _check_format(budget, left, args)


# The guards take the context only so Jinja's optimizer never runs them at compile time (it
# folds constant filter calls, which would skip the runtime check or allocate while compiling).


@pass_context
def _guard_iter(_: Context, iterable: Any) -> Iterator[Any]:
    """Every `{% for %}` iterates through this (see `_BudgetTransformer`)."""
    budget = _budget()
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.tick()
        yield item


@pass_context
def _guard_out(_: Context, value: Any) -> Any:
    """Every `{{ expression }}` passes here: its size is charged to the render."""
    budget = _budget()
    if budget is not None:
        budget.charge(len(str(value)))
    return value


@pass_context
def _guard_literal(_: Context, size: int) -> str:
    """Charges the literal text of one output statement; renders as nothing."""
    budget = _budget()
    if budget is not None:
        budget.charge(size)
    return ""


@pass_context
def _guard_concat(_: Context, value: Any) -> Any:
    """The result of `~`: checked so repeated doubling stops at the budget."""
    budget = _budget()
    if budget is not None:
        budget.check_size(len(value))
        budget.tick()
    return value


def _guarded_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a builtin filter whose arguments can ask for unbounded memory or time."""

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Refuses arguments that ask for too much; returns the arguments to call with."""
        budget = _budget()
        if budget is None:
            return args
        budget.tick()
        value = args[0] if args else None
        rest = args[1:]
        text = str(value) if value is not None else ""
        if name == "center":
            budget.check_size(_int_arg(rest[0] if rest else kwargs.get("width", 80)))
        elif name == "indent":
            width = rest[0] if rest else kwargs.get("width", 4)
            width_size = len(width) if isinstance(width, str) else _int_arg(width)
            budget.check_size(len(text) + (text.count("\n") + 1) * width_size)
        elif name == "replace" and len(rest) >= 2:
            _check_replace(budget, text, str(rest[0]), rest[1])
        elif name == "join":
            separator = rest[0] if rest else kwargs.get("d", "")
            return (_check_join(budget, str(separator), value), *rest)
        elif name == "format":
            _check_format(budget, text, list(rest) + list(kwargs.values()))
        elif name == "tojson":
            indent = rest[0] if rest else kwargs.get("indent")
            if _sized(indent) > MAX_INDENT or abs(_int_arg(indent)) > MAX_INDENT:
                raise RenderBudgetExceeded(f"tojson indent above {MAX_INDENT} is not allowed")
        elif name in {"batch", "slice"}:
            count = rest[0] if rest else kwargs.get("linecount", kwargs.get("slices", 1))
            if abs(_int_arg(count)) > MAX_RANGE:
                raise RenderBudgetExceeded(f"{name} larger than {MAX_RANGE} is not allowed")
        return args

    pass_arg = getattr(getattr(original, "jinja_pass_arg", None), "name", None)

    @pass_context
    def guarded(context: Context, *args: Any, **kwargs: Any) -> Any:
        args = check(args, kwargs)
        if pass_arg == "environment":
            return original(context.environment, *args, **kwargs)
        if pass_arg == "eval_context":
            return original(context.eval_ctx, *args, **kwargs)
        if pass_arg == "context":
            return original(context, *args, **kwargs)
        return original(*args, **kwargs)

    return guarded


_GUARDED_FILTERS = ("center", "indent", "replace", "join", "format", "batch", "slice", "tojson")


class _BudgetTransformer(NodeTransformer):
    """Rewrites a parsed template so loops, output and `~` go through the budget guards."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_guard_iter", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, "_guard_concat", [], [], None, None, lineno=node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        literal = 0
        children: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                literal += len(child.data)
                children.append(child)
            else:
                children.append(
                    nodes.Filter(child, "_guard_out", [], [], None, None, lineno=child.lineno)
                )
        if literal:
            charge = nodes.Filter(
                nodes.Const(literal), "_guard_literal", [], [], None, None, lineno=node.lineno
            )
            children.insert(0, nodes.MarkSafe(charge, lineno=node.lineno))
        node.nodes = children
        return node


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox (no `list.append` doubling) with a smaller `range` and budgets."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # lipsum(n=10**9) loops in Python where no guard can reach it; nobody needs it.
        self.globals.pop("lipsum", None)
        for name in _GUARDED_FILTERS:
            self.filters[name] = _guarded_filter(name, self.filters[name])
        self.filters["_guard_iter"] = _guard_iter
        self.filters["_guard_out"] = _guard_out
        self.filters["_guard_literal"] = _guard_literal
        self.filters["_guard_concat"] = _guard_concat

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        result: nodes.Template = _BudgetTransformer().visit(tree)
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        if (__obj is safe_range or __obj is range) and any(
            abs(_int_arg(a)) > MAX_RANGE for a in args
        ):
            raise SecurityError(f"range larger than {MAX_RANGE} is not allowed")
        if budget is not None:
            budget.tick()
            target = getattr(__obj, "__wrapped__", __obj)
            owner = getattr(target, "__self__", None)
            name = getattr(target, "__name__", "")
            if isinstance(owner, str):
                # The checked arguments: an iterator given to `join` comes back as a list.
                args = _check_str_method(budget, owner, name, args)
            elif isinstance(owner, bytes | bytearray):
                # The same blow-ups as str (`b'x'.center(10**9)`), checked as text.
                text_args = tuple(a.decode("latin-1") if isinstance(a, bytes) else a for a in args)
                if name == "join":
                    args = tuple(list(a) if not isinstance(a, Sized) else a for a in args)
                    text_args = tuple(
                        [i.decode("latin-1") if isinstance(i, bytes) else i for i in a]
                        if isinstance(a, list)
                        else a
                        for a in text_args
                    )
                _check_str_method(budget, owner.decode("latin-1"), name, text_args)
        result = super().call(__context, __obj, *args, **kwargs)
        if budget is not None:
            budget.check_size(_sized(result))
        return result

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        if budget is not None:
            budget.tick()
            _check_binop(budget, operator, left, right)
        return super().call_binop(context, operator, left, right)


_TEXT_ENV = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_HTML_ENV = _Sandbox(undefined=StrictUndefined, autoescape=True, keep_trailing_newline=True)
_GLOBALS = frozenset(_TEXT_ENV.globals)


def _env(html: bool) -> _Sandbox:
    return _HTML_ENV if html else _TEXT_ENV


@lru_cache(maxsize=4096)
def _parse(source: str) -> nodes.Template:
    return _TEXT_ENV.parse(source)


@lru_cache(maxsize=4096)
def _compile(source: str, html: bool) -> Any:
    return _env(html).from_string(source)


@lru_cache(maxsize=4096)
def _variables(source: str) -> frozenset[str]:
    # A code-generation pass over the tree: ~1 ms, so once per source, not once per message.
    return frozenset(meta.find_undeclared_variables(_parse(source)) - _GLOBALS)


def variables_used(source: str) -> set[str]:
    """The variables a template reads, found by parsing (never typed in by a person)."""
    return set(_variables(source))


def validate(fields: Mapping[str, str | None], html_fields: Iterable[str] = ("html_body",)) -> None:
    """Raise `TemplateSyntaxInvalid` naming the field and line of the first error.

    Compiles as well as parses, so an unknown filter or test is refused on save rather than on
    the first delivery.
    """
    html = frozenset(html_fields)
    for name, source in fields.items():
        if source is None:
            continue
        try:
            _compile(source, name in html)
        except TemplateSyntaxError as exc:
            raise TemplateSyntaxInvalid(name, exc.lineno, exc.message or "syntax error") from exc


@dataclass(frozen=True)
class TemplateFields:
    """A version's renderable fields; `html_fields` are autoescaped.

    Push `data` values are fields named `data.<key>`; `nest_data` folds them back.
    """

    fields: Mapping[str, str | None]
    html_fields: frozenset[str] = field(default_factory=lambda: frozenset({"html_body"}))

    def variables(self) -> set[str]:
        found: set[str] = set()
        for source in self.fields.values():
            if source:
                found |= variables_used(source)
        return found


def channel_fields(channel: str, values: Mapping[str, Any]) -> TemplateFields:
    """The renderable fields of a version of `channel` ("email" or "push") from its values."""
    if channel == "email":
        return TemplateFields({name: values.get(name) for name in EMAIL_FIELDS})
    fields: dict[str, str | None] = {name: values.get(name) for name in PUSH_FIELDS}
    for key, value in (values.get("data") or {}).items():
        fields[DATA_PREFIX + key] = None if value is None else str(value)
    return TemplateFields(fields, html_fields=frozenset())


def nest_data(rendered: Mapping[str, str | None]) -> dict[str, Any]:
    """Fold rendered `data.<key>` fields into one `data` map (None when there are none)."""
    result: dict[str, Any] = {}
    data: dict[str, str | None] = {}
    for name, value in rendered.items():
        if name.startswith(DATA_PREFIX):
            data[name[len(DATA_PREFIX) :]] = value
        else:
            result[name] = value
    if data or "title" in rendered:
        result["data"] = data or None
    return result


def render(
    template: TemplateFields,
    variables: Mapping[str, Any],
    *,
    time_budget: float = MAX_RENDER_SECONDS,
    max_chars: int = MAX_OUTPUT_CHARS,
) -> dict[str, str | None]:
    """Render every field or raise: `MissingVariables` (all names) or `RenderError`.

    `time_budget` (seconds) and `max_chars` (per field; 4x across the render) bound the work a
    template can cause; exceeding either raises `RenderBudgetExceeded`.
    """
    validate(template.fields, template.html_fields)
    missing = sorted(template.variables() - set(variables))
    if missing:
        raise MissingVariables(missing)
    budget = _Budget(
        deadline=time.monotonic() + time_budget,
        max_chars=max_chars,
        chars_left=max_chars * MAX_TOTAL_CHARS_FACTOR,
    )
    token = _BUDGET.set(budget)
    try:
        rendered: dict[str, str | None] = {}
        for name, source in template.fields.items():
            if source is None:
                rendered[name] = None
                continue
            rendered[name] = _render_one(source, name in template.html_fields, variables, budget)
        return rendered
    finally:
        _BUDGET.reset(token)


_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")


def _render_one(source: str, html: bool, variables: Mapping[str, Any], budget: _Budget) -> str:
    compiled = _compile(source, html)
    try:
        # Every output piece is charged to the budget as it is produced (`_guard_out`,
        # `_guard_literal`), so the joined result is already bounded; check the field itself.
        result = compiled.render(variables)
        budget.check_size(len(result))
    except UndefinedError as exc:
        message = str(exc.message or "unknown")
        found = _UNDEFINED_NAME.match(message)
        raise MissingVariables([found.group(1) if found else message]) from exc
    except SecurityError as exc:
        raise RenderError(f"template tried something unsafe: {exc}") from exc
    except RenderError:
        raise
    except RecursionError as exc:
        raise RenderBudgetExceeded("the template recurses too deeply") from exc
    except MemoryError as exc:
        raise RenderBudgetExceeded("the template needs too much memory") from exc
    except Exception as exc:  # a template error of any kind fails the render, never the worker
        raise RenderError(f"render failed: {type(exc).__name__}: {exc}") from exc
    return str(result) if isinstance(result, Markup) else result
