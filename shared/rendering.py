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

Since a `~`, a comparison, `tojson` or plain output can turn a value that is small in memory
(one list shared a million times) into an enormous text, every value a filter, call, `~`,
comparison or output receives is first measured as text (`_text_size`, which stops counting at
the budget). `sum` concatenates sequences in linear time, after a size check.

These guards are cooperative: they run inside the render. The template service renders
untrusted drafts in a separate process with a memory limit and a kill on timeout
(`shared/render_pool.py`), which holds even where a guard is missing.

Links: a variable that starts the value of a URL attribute (`href`, `src`, ...) of an HTML
field, or a URL field (push `image_url`), must be an `http`, `https` or `mailto` URL; anything
else raises `UnsafeLink` naming the variable. The positions are found when a template is
compiled (`TemplateFields.link_variables()`, stored with each version), and the value is checked
again at render, so the template service, the gateway and both workers refuse the same values.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes, pass_context
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import Namespace
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

# The only schemes a variable may give a link; anything else (javascript:, data:, vbscript:,
# a relative or scheme-less value) is refused.
ALLOWED_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
# Attributes whose value a browser or mail client follows or loads as a URL.
URL_ATTRIBUTES = frozenset(
    {"href", "src", "action", "formaction", "poster", "background", "cite", "xlink:href"}
)

# How a field is rendered: escaped HTML, plain text, or plain text that is a URL as a whole.
FieldKind = Literal["html", "text", "url"]


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


class UnsafeLink(RenderError):
    """A variable that starts a link is not an http, https or mailto URL."""

    code = "unsafe_link"

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"a link must be an http, https or mailto URL: {', '.join(names)}")
        self.names = names


# --- links ------------------------------------------------------------------------------------

_LINK_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# What browsers drop before reading a scheme: leading C0 controls and spaces; tabs and line
# breaks anywhere (so `java\tscript:` is `javascript:`).
_LEADING_JUNK = "".join(chr(c) for c in range(0x21))
_DROPPED = {9: None, 10: None, 13: None}
# In an unquoted attribute value these would end the value and start another attribute.
_UNQUOTED_BREAK = re.compile(r"[\s\"'=<>`]")


def is_allowed_link(value: str) -> bool:
    """True for an absolute http, https or mailto URL, read the way a browser reads it."""
    found = _LINK_SCHEME.match(value.lstrip(_LEADING_JUNK).translate(_DROPPED))
    return found is not None and found.group(1).lower() in ALLOWED_LINK_SCHEMES


def unsafe_links(link_variables: Iterable[str], variables: Mapping[str, Any]) -> list[str]:
    """The link variables (dotted paths, as stored with a version) whose given value is not an
    allowed link; cheap enough for a send path (no rendering).

    A path that does not resolve to text or a number here (absent, or inside a list) is left
    to the check at render, which sees the value actually placed in the link.
    """
    refused: list[str] = []
    for path in link_variables:
        value: Any = variables
        for part in path.split("."):
            value = value.get(part, _ABSENT) if isinstance(value, Mapping) else _ABSENT
            if value is _ABSENT:
                break
        if isinstance(value, str | int | float) and not is_allowed_link(str(value)):
            refused.append(path)
    return sorted(refused)


def missing_variables(required: Iterable[str], variables: Mapping[str, Any]) -> list[str]:
    """The required variables (as stored with a version) that `variables` lacks, sorted: the
    same names a render would raise `MissingVariables` for."""
    return sorted(set(required) - set(variables))


_ABSENT = object()


class _LinkTracker:
    """Follows the literal text of a template in document order and tells, at each expression,
    whether it starts a link: the value of a URL attribute (or a URL field) whose scheme the
    literal text before it has not fixed yet.

    Deliberately small (not a full HTML tokenizer) and approximate across branches, which are
    read one after the other; the value placed in a link is checked again at render.
    """

    def __init__(self, kind: FieldKind) -> None:
        self.kind = kind
        self.state = "value" if kind == "url" else "data"
        self.attribute = ""
        self.quote = '"' if kind == "url" else ""
        # Inside a URL value whose scheme is still open (nothing but scheme letters so far).
        self.open = kind == "url"
        self.seen = False

    def feed(self, text: str) -> None:
        if self.kind == "text":
            return
        if self.kind == "url":
            for char in text:
                self._value_char(char)
            return
        i = 0
        while i < len(text):
            i = self._step(text, i)

    def at_expression(self) -> tuple[bool, bool]:
        """(starts a link, the value is quoted); the expression then fixes the scheme."""
        if self.state == "before_value":  # `href={{ x }}`: an unquoted value starts here
            self._start_value("")
        if self.state == "value" and self.open:
            self.open = False
            return True, bool(self.quote)
        return False, True

    def _step(self, text: str, i: int) -> int:
        char = text[i]
        state = self.state
        if state == "data":
            if text.startswith("<!--", i):
                self.state = "comment"
                return i + 4
            if char == "<":
                self.state = "tag_name"
        elif state == "comment":
            if text.startswith("-->", i):
                self.state = "data"
                return i + 3
        elif state == "tag_name":
            if char == ">":
                self.state = "data"
            elif char.isspace():
                self.state = "tag"
        elif state in ("tag", "after_name"):
            if char == ">":
                self.state = "data"
            elif char == "=" and state == "after_name":
                self.state = "before_value"
            elif not char.isspace() and char != "/":
                self.state, self.attribute = "attribute", char.lower()
        elif state == "attribute":
            if char == "=":
                self.state = "before_value"
            elif char == ">":
                self.state = "data"
            elif char.isspace():
                self.state = "after_name"
            else:
                self.attribute += char.lower()
        elif state == "before_value":
            if char == ">":
                self.state = "data"
            elif not char.isspace():
                self._start_value(char if char in "\"'" else "")
                if not self.quote:
                    return i  # the character is the value's first: read it as such
        elif state == "value":
            if self.quote and char == self.quote:
                self.state, self.open = "tag", False
            elif not self.quote and (char.isspace() or char == ">"):
                self.state, self.open = ("data" if char == ">" else "tag"), False
            else:
                self._value_char(char)
        return i + 1

    def _start_value(self, quote: str) -> None:
        self.state, self.quote, self.seen = "value", quote, False
        self.open = self.attribute in URL_ATTRIBUTES

    def _value_char(self, char: str) -> None:
        if not self.open or char in "\t\n\r":
            return
        if char == " " and not self.seen:
            return
        self.seen = True
        if not (char.isascii() and (char.isalnum() or char in "+.-")):
            self.open = False  # `:`, `/`, `?`, `#`, ...: the literal text fixed the scheme


def _expression_paths(node: nodes.Node) -> tuple[str, ...]:
    """`link` -> ("link",); `user.url` / `user['url']` -> ("user.url",); a filtered reference
    keeps its path; anything else names every variable it reads."""
    while isinstance(node, nodes.Filter) and node.node is not None:
        node = node.node
    parts: list[str] = []
    current: nodes.Node = node
    while True:
        if isinstance(current, nodes.Getattr):
            parts.append(current.attr)
            current = current.node
        elif (
            isinstance(current, nodes.Getitem)
            and isinstance(current.arg, nodes.Const)
            and isinstance(current.arg.value, str)
        ):
            parts.append(current.arg.value)
            current = current.node
        else:
            break
    if isinstance(current, nodes.Name):
        return (".".join([current.name, *reversed(parts)]),)
    names = sorted({n.name for n in node.find_all(nodes.Name) if n.ctx == "load"})
    return tuple(names)


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

    def check_text(self, value: Any) -> None:
        """Refuse a value whose text would be over the budget, before anything builds it."""
        self.check_size(_text_size(value, self.max_chars))


_BUDGET: ContextVar[_Budget | None] = ContextVar("render_budget", default=None)


def _budget() -> _Budget | None:
    return _BUDGET.get()


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict | set) else 0


def _int_arg(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


_CONTAINERS = (list, tuple, set, frozenset)


def _text_size(value: Any, limit: int) -> int:
    """About `len(str(value))`, counted without building it, and only up to just past `limit`:
    `[[x] * 1000] * 1000` is two small lists in memory but a million items as text.

    Work is bounded by `limit` however the value shares its parts.
    """
    if isinstance(value, str | bytes):
        return len(value)
    if not isinstance(value, (*_CONTAINERS, dict, Namespace)):
        return 8  # a number or another scalar: small (big integers are refused elsewhere)
    total = 0
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str | bytes):
            total += len(item) + 4
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            if total <= limit:
                pending.extend(item.keys())
                pending.extend(item.values())
        elif isinstance(item, _CONTAINERS):
            total += 2 + 2 * len(item)
            if total <= limit:
                pending.extend(item)
        elif isinstance(item, Namespace):  # `namespace()`: its repr shows every value
            pending.append(item._Namespace__attrs)
        else:
            total += 8
        if total > limit:
            return total
    return total


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
    largest = max((_text_size(v, budget.max_chars) for v in values), default=0)
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
    total = len(separator) * len(items)
    for item in items:
        total += _text_size(item, budget.max_chars)
        budget.check_size(total)
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
        if isinstance(value, str):
            budget.charge(len(value))
        else:
            budget.check_text(value)
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


@pass_context
def _guard_text(_: Context, value: Any) -> Any:
    """An operand of `~` or of a comparison: its text (or a deep comparison) stays in budget."""
    budget = _budget()
    if budget is not None:
        budget.check_text(value)
        budget.tick()
    return value


@pass_context
def _guard_link(_: Context, value: Any, paths: tuple[str, ...], quoted: bool) -> Any:
    """A value that starts a link (see `_LinkTracker`): an allowed URL or nothing renders."""
    if isinstance(value, str | int | float):
        text = str(value)
        if not is_allowed_link(text) or (not quoted and _UNQUOTED_BREAK.search(text)):
            raise UnsafeLink(list(paths) or ["(expression)"])
    elif not isinstance(value, Undefined):
        raise UnsafeLink(list(paths) or ["(expression)"])
    return value


@pass_context
def _safe_sum(
    context: Context, iterable: Any, attribute: str | int | None = None, start: Any = 0
) -> Any:
    """`sum` without its quadratic case: sequences are size-checked, then chained once."""
    if attribute is not None:
        iterable = map(make_attrgetter(context.environment, attribute), iterable)
    items = list(iterable)
    budget = _budget()
    if not isinstance(start, str | bytes | list | tuple) and not any(
        isinstance(i, str | bytes | list | tuple) for i in items
    ):
        if budget is not None:
            budget.tick()
        return sum(items, start)
    if budget is not None:
        budget.check_size(_sized(start) + sum(_sized(i) for i in items))
        budget.tick()
    if isinstance(start, list) and all(isinstance(i, list) for i in items):
        return list(itertools.chain(start, *items))
    if isinstance(start, tuple) and all(isinstance(i, tuple) for i in items):
        return tuple(itertools.chain(start, *items))
    return sum(items, start)  # a type error (str, mixed): Python refuses it at once


def _guarded_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a builtin filter: every argument is measured as text first, and the arguments of
    those that can ask for unbounded memory or time are checked for what they ask."""

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Refuses arguments that ask for too much; returns the arguments to call with."""
        budget = _budget()
        if budget is None:
            return args
        budget.tick()
        for argument in (*args, *kwargs.values()):
            budget.check_text(argument)
        value = args[0] if args else None
        rest = args[1:]
        text = value if isinstance(value, str) else ""
        if name == "center":
            budget.check_size(_int_arg(rest[0] if rest else kwargs.get("width", 80)))
        elif name == "indent":
            width = rest[0] if rest else kwargs.get("width", 4)
            width_size = len(width) if isinstance(width, str) else _int_arg(width)
            text = str(value) if value is not None else ""
            budget.check_size(len(text) + (text.count("\n") + 1) * width_size)
        elif name == "replace" and len(rest) >= 2:
            _check_replace(budget, str(value) if value is not None else "", str(rest[0]), rest[1])
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
            result = original(context.environment, *args, **kwargs)
        elif pass_arg == "eval_context":
            result = original(context.eval_ctx, *args, **kwargs)
        elif pass_arg == "context":
            result = original(context, *args, **kwargs)
        else:
            result = original(*args, **kwargs)
        budget = _budget()
        if budget is not None:
            budget.check_size(_sized(result))
        return result

    return guarded


def _filter(child: nodes.Node, name: str, *args: Any) -> nodes.Filter:
    return nodes.Filter(
        child, name, [nodes.Const(a) for a in args], [], None, None, lineno=child.lineno
    )


class _BudgetTransformer(NodeTransformer):
    """Rewrites a parsed template so loops, output, `~` and comparisons go through the budget
    guards, and every expression that starts a link goes through the link check."""

    def __init__(self, kind: FieldKind) -> None:
        self.links = _LinkTracker(kind)
        self.link_paths: set[str] = set()

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _filter(node.iter, "_guard_iter")
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_filter(child, "_guard_text") for child in node.nodes]
        return _filter(node, "_guard_concat")

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _filter(node.expr, "_guard_text")
        for operand in node.ops:
            operand.expr = _filter(operand.expr, "_guard_text")
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        literal = 0
        children: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                literal += len(child.data)
                self.links.feed(child.data)
                children.append(child)
                continue
            if isinstance(child, nodes.Const) and isinstance(child.value, str):
                self.links.feed(child.value)
            else:
                starts_link, quoted = self.links.at_expression()
                if starts_link:
                    paths = _expression_paths(child)
                    self.link_paths.update(paths)
                    child = _filter(child, "_guard_link", paths, quoted)
            children.append(_filter(child, "_guard_out"))
        if literal:
            charge = _filter(nodes.Const(literal), "_guard_literal")
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
        self.filters["sum"] = _safe_sum
        for name in list(self.filters):
            self.filters[name] = _guarded_filter(name, self.filters[name])
        self.filters["_guard_iter"] = _guard_iter
        self.filters["_guard_out"] = _guard_out
        self.filters["_guard_literal"] = _guard_literal
        self.filters["_guard_concat"] = _guard_concat
        self.filters["_guard_text"] = _guard_text
        self.filters["_guard_link"] = _guard_link

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
            for argument in (owner, *args, *kwargs.values()):
                budget.check_text(argument)
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


@dataclass(frozen=True)
class _Compiled:
    template: Any
    # Dotted paths of the expressions that start a link (see `_LinkTracker`).
    link_paths: frozenset[str]


@lru_cache(maxsize=4096)
def _parse(source: str) -> nodes.Template:
    return _TEXT_ENV.parse(source)


@lru_cache(maxsize=4096)
def _compile(source: str, kind: FieldKind) -> _Compiled:
    env = _HTML_ENV if kind == "html" else _TEXT_ENV
    transformer = _BudgetTransformer(kind)
    tree = transformer.visit(env.parse(source))
    return _Compiled(env.from_string(tree), frozenset(transformer.link_paths))


@lru_cache(maxsize=4096)
def _variables(source: str) -> frozenset[str]:
    # A code-generation pass over the tree: ~1 ms, so once per source, not once per message.
    return frozenset(meta.find_undeclared_variables(_parse(source)) - _GLOBALS)


def variables_used(source: str) -> set[str]:
    """The variables a template reads, found by parsing (never typed in by a person)."""
    return set(_variables(source))


def link_variables_used(source: str, kind: FieldKind = "html") -> set[str]:
    """The variables (dotted paths, e.g. `user.url`) whose value starts a link in `source`."""
    declared = _variables(source)
    return {p for p in _compile(source, kind).link_paths if p.split(".", 1)[0] in declared}


def _kind(name: str, html_fields: Iterable[str], url_fields: Iterable[str] = ()) -> FieldKind:
    if name in html_fields:
        return "html"
    return "url" if name in url_fields else "text"


def validate(
    fields: Mapping[str, str | None],
    html_fields: Iterable[str] = ("html_body",),
    url_fields: Iterable[str] = (),
) -> None:
    """Raise `TemplateSyntaxInvalid` naming the field and line of the first error.

    Compiles as well as parses, so an unknown filter or test is refused on save rather than on
    the first delivery.
    """
    html, urls = frozenset(html_fields), frozenset(url_fields)
    for name, source in fields.items():
        if source is None:
            continue
        try:
            _compile(source, _kind(name, html, urls))
        except TemplateSyntaxError as exc:
            raise TemplateSyntaxInvalid(name, exc.lineno, exc.message or "syntax error") from exc


@dataclass(frozen=True)
class TemplateFields:
    """A version's renderable fields; `html_fields` are autoescaped, `url_fields` are links
    as a whole (their leading variable must be an allowed URL).

    Push `data` values are fields named `data.<key>`; `nest_data` folds them back.
    """

    fields: Mapping[str, str | None]
    html_fields: frozenset[str] = field(default_factory=lambda: frozenset({"html_body"}))
    url_fields: frozenset[str] = frozenset()

    def kind(self, name: str) -> FieldKind:
        return _kind(name, self.html_fields, self.url_fields)

    def variables(self) -> set[str]:
        found: set[str] = set()
        for source in self.fields.values():
            if source:
                found |= variables_used(source)
        return found

    def link_variables(self) -> set[str]:
        """Variables whose value starts a link: stored with a version, checked at send."""
        found: set[str] = set()
        for name, source in self.fields.items():
            if source:
                found |= link_variables_used(source, self.kind(name))
        return found


@dataclass(frozen=True)
class Analysis:
    """What a version needs, computed once when it is saved."""

    variables: list[str]
    link_variables: list[str]


def analyse(template: TemplateFields) -> Analysis:
    """Compile every field (`TemplateSyntaxInvalid` on the first error) and list the variables
    it requires and those that start a link."""
    validate(template.fields, template.html_fields, template.url_fields)
    return Analysis(sorted(template.variables()), sorted(template.link_variables()))


def channel_fields(channel: str, values: Mapping[str, Any]) -> TemplateFields:
    """The renderable fields of a version of `channel` ("email" or "push") from its values."""
    if channel == "email":
        return TemplateFields({name: values.get(name) for name in EMAIL_FIELDS})
    fields: dict[str, str | None] = {name: values.get(name) for name in PUSH_FIELDS}
    for key, value in (values.get("data") or {}).items():
        fields[DATA_PREFIX + key] = None if value is None else str(value)
    return TemplateFields(fields, html_fields=frozenset(), url_fields=frozenset({"image_url"}))


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
    """Render every field or raise: `MissingVariables` (all names), `UnsafeLink` or
    `RenderError`.

    `time_budget` (seconds) and `max_chars` (per field; 4x across the render) bound the work a
    template can cause; exceeding either raises `RenderBudgetExceeded`.
    """
    validate(template.fields, template.html_fields, template.url_fields)
    missing = missing_variables(template.variables(), variables)
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
            rendered[name] = _render_one(source, template.kind(name), variables, budget)
        return rendered
    finally:
        _BUDGET.reset(token)


_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")


def _render_one(source: str, kind: FieldKind, variables: Mapping[str, Any], budget: _Budget) -> str:
    compiled = _compile(source, kind).template
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
