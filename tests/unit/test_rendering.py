"""The shared renderer: strict, sandboxed, escaping only HTML, and bounded in time and size."""

from __future__ import annotations

import time

import pytest

from shared.rendering import (
    MissingVariables,
    RenderBudgetExceeded,
    RenderError,
    TemplateFields,
    TemplateSyntaxInvalid,
    channel_fields,
    nest_data,
    render,
    validate,
    variables_used,
)


def text(source: str) -> TemplateFields:
    return TemplateFields({"text_body": source})


def test_variables_are_found_by_parsing_and_exclude_globals_and_locals() -> None:
    source = "{% for i in range(3) %}{{ i }}{{ name }}{% endfor %}{% set x = 1 %}{{ x }}{{ link }}"
    assert variables_used(source) == {"name", "link"}


def test_missing_variables_are_all_named_before_anything_renders() -> None:
    fields = TemplateFields({"subject": "{{ b }}", "text_body": "{{ a }} {{ c }}"})
    with pytest.raises(MissingVariables) as exc:
        render(fields, {"c": 1})
    assert exc.value.names == ["a", "b"]
    assert exc.value.code == "missing_variables"


def test_only_html_fields_are_autoescaped() -> None:
    fields = TemplateFields({"subject": "{{ v }}", "html_body": "<b>{{ v }}</b>"})
    assert render(fields, {"v": "<i>&"}) == {
        "subject": "<i>&",
        "html_body": "<b>&lt;i&gt;&amp;</b>",
    }


def test_syntax_errors_name_the_field_and_line() -> None:
    with pytest.raises(TemplateSyntaxInvalid) as exc:
        validate({"subject": "ok", "html_body": "a\nb\n{% for %}"})
    assert (exc.value.field, exc.value.line, exc.value.code) == (
        "html_body",
        3,
        "template_syntax_error",
    )


def test_unknown_filters_are_refused_on_validation() -> None:
    with pytest.raises(TemplateSyntaxInvalid):
        validate({"text_body": "{{ x|no_such_filter }}"})


def test_ordinary_templates_render_loops_filters_and_formatting() -> None:
    source = (
        "{% for item in items %}{{ loop.index }}. {{ item|upper }}{{ ', ' if not loop.last }}"
        "{% endfor %} | {{ '%05.1f' % total }} | {{ '{}!'.format(name) }} | {{ names|join('/') }}"
    )
    rendered = render(
        text(source), {"items": ["a", "b"], "total": 3.14159, "name": "x", "names": ["p", "q"]}
    )
    assert rendered["text_body"] == "1. A, 2. B | 003.1 | x! | p/q"


def test_guarded_methods_and_filters_still_work_on_ordinary_input() -> None:
    source = (
        "{{ range(3)|map('string')|join(',') }}|{{ '-'.join(range(3)|map('string')) }}|"
        "{{ 'a'.encode().center(3) }}|{{ ','.encode().join(['x'.encode(), 'y'.encode()]) }}|"
        "{{ [1]|tojson }}|{{ 'ab'|center(4) }}"
    )
    assert render(text(source), {})["text_body"] == "0,1,2|0-1-2|b' a '|b'x,y'|[1]| ab "


def test_a_thousand_item_loop_is_well_within_budget() -> None:
    rendered = render(text("{% for i in range(1000) %}{{ i }}{% endfor %}"), {})
    assert rendered["text_body"] is not None and len(rendered["text_body"]) > 1000


HOSTILE = {
    "dunder attribute": "{{ name.__class__.__mro__[1].__subclasses__() }}",
    "globals through a function": "{{ cycler.__init__.__globals__ }}",
    "range(10**9)": "{{ range(10**9)|list|length }}",
    "huge literal range": "{% for i in range(1000000000) %}{% endfor %}",
    "string multiplication": "{{ 'a' * 10**9 }}",
    "list multiplication": "{{ ([1] * 1000000000)|length }}",
    "huge power": "{{ 10 ** (10 ** 10) }}",
    "nested loops": (
        "{% for a in range(9999) %}{% for b in range(9999) %}{% for c in range(9999) %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    ),
    "nested loops over a literal list": (
        "{% set l = [0,1,2,3,4,5,6,7,8,9] %}" + "{% for x in l %}" * 9 + "{% endfor %}" * 9
    ),
    "unbounded macro recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "exponential macro recursion": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}"
    ),
    "doubling with ~": (
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}"
    ),
    "doubling in captured blocks": (
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s %}{{ ns.s }}"
        "{{ ns.s }}{% endset %}{% endfor %}{{ ns.s|length }}"
    ),
    "center filter": "{{ 'x'|center(1000000000) }}",
    "str method width": "{{ 'x'.ljust(1000000000) }}",
    "percent width": "{{ '%1000000000d' % 1 }}",
    "format width": "{{ '{:1000000000}'.format(1) }}",
    "batch fill": "{{ [1]|batch(1000000000, 0)|list }}",
    "replace blow-up": "{{ ('a' * 200000)|replace('a', 'aaaaaaaa') }}",
    "bytes method width": "{{ 'x'.encode().center(1000000000) }}",
    "tojson indent": "{{ range(100)|list|tojson(100000000) }}",
    "precision": "{{ '%.1000000000f' % 1.5 }}",
    "join separator": "{{ range(10000)|join('x' * 200000) }}",
    "join of an iterator": "{{ range(10000)|map('string')|join('x' * 200000) }}",
    "str.join of an iterator": "{{ ('x' * 200000).join(range(10000)|map('string')) }}",
    "list mutation": "{% set l = [1] %}{{ l.append(2) }}",
    "lorem ipsum generator": "{{ lipsum(1000000000) }}",
}


@pytest.mark.parametrize("source", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_templates_fail_fast_instead_of_hanging(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(RenderError) as exc:
        render(text(source), {"name": "x"}, time_budget=0.3)
    assert time.monotonic() - started < 2.0
    assert exc.value.code in {"template_render_failed", "missing_variables"}
    if "lipsum" not in source:
        assert exc.value.code == "template_render_failed"


def test_output_beyond_the_size_budget_fails() -> None:
    with pytest.raises(RenderBudgetExceeded):
        render(text("{% for i in range(5000) %}{{ big }}{% endfor %}"), {"big": "x" * 100})


def test_budget_applies_across_fields_of_one_render() -> None:
    source = "{% for i in range(200) %}" + "x" * 1000 + "{% endfor %}"
    fields = TemplateFields({f"f{n}": source for n in range(8)})
    with pytest.raises(RenderBudgetExceeded):
        render(fields, {}, max_chars=256 * 1024)


def test_push_fields_carry_data_values_and_fold_back() -> None:
    fields = channel_fields(
        "push", {"title": "Hi {{ n }}", "body": "b", "image_url": None, "data": {"k": "{{ n }}!"}}
    )
    assert fields.html_fields == frozenset()
    assert fields.variables() == {"n"}
    rendered = nest_data(render(fields, {"n": "<A>"}))
    assert rendered == {"title": "Hi <A>", "body": "b", "image_url": None, "data": {"k": "<A>!"}}


def test_email_fields_escape_only_the_html_body() -> None:
    fields = channel_fields(
        "email", {"subject": "{{ n }}", "text_body": "{{ n }}", "html_body": "{{ n }}"}
    )
    assert render(fields, {"n": "<"}) == {"subject": "<", "text_body": "<", "html_body": "&lt;"}
