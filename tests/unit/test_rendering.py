"""The shared renderer: strict, sandboxed, escaping only HTML, and bounded in time and size."""

from __future__ import annotations

import time

import pytest

from shared.rendering import (
    Analysis,
    MissingVariables,
    RenderBudgetExceeded,
    RenderError,
    TemplateFields,
    TemplateSyntaxInvalid,
    UnsafeLink,
    _text_size,
    analyse,
    channel_fields,
    is_allowed_link,
    missing_variables,
    nest_data,
    render,
    unsafe_links,
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


# Hostile payloads of the kind a security review found (a `sum` that stalled a service for
# seconds, a 70-byte `tojson` that built megabytes), ten times larger: the cooperative guards
# refuse them before they allocate.
AMPLIFIED = {
    "sum over shared lists": "{{ ([range(10000)|list] * 10000)|sum(start=[])|length }}",
    "tojson of a shared list": "{{ ([range(9999)|list] * 999)|tojson|length }}",
    "pprint of nested sharing": "{% set a = [[range(999)|list] * 999] * 999 %}{{ a|pprint|length }}",
    "output of nested sharing": "{% set a = [[range(999)|list] * 999] * 999 %}{{ a }}",
    "concat of nested sharing": "{% set a = [[range(999)|list] * 999] * 999 %}{{ (a ~ '')|length }}",
    "deep comparison": (
        "{% set a = [[range(999)|list] * 999] * 999 %}{% set b = [[range(999)|list] * 999] * 999 %}"
        "{{ a == b }}"
    ),
    "join of nested items": "{% set a = [[range(999)|list] * 999] * 99 %}{{ a|join(',')|length }}",
    "format of a nested value": "{% set a = [[range(999)|list] * 999] * 99 %}{{ '%s' % [a] }}",
    "string filter": "{% set a = [[range(999)|list] * 999] * 99 %}{{ a|string|length }}",
}


@pytest.mark.parametrize("source", AMPLIFIED.values(), ids=AMPLIFIED.keys())
def test_amplified_payloads_are_refused_before_they_allocate(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(RenderBudgetExceeded):
        render(text(source), {}, time_budget=0.5)
    assert time.monotonic() - started < 0.5


def test_sum_still_adds_numbers_attributes_and_small_lists() -> None:
    source = (
        "{{ [1, 2, 3]|sum }} {{ [{'p': 1}, {'p': 2}]|sum(attribute='p') }} "
        "{{ [[1], [2, 3]]|sum(start=[]) }} {{ [(1,), (2,)]|sum(start=()) }}"
    )
    assert render(text(source), {})["text_body"] == "6 3 [1, 2, 3] (1, 2)"


def test_text_size_counts_shared_parts_and_stops_at_the_limit() -> None:
    inner = list(range(1000))
    assert _text_size("abc", 10) == 3
    assert len(str(inner)) <= _text_size(inner, 10**6) < 4 * len(str(inner))
    assert _text_size([[inner] * 1000] * 1000, 1000) <= 3000  # stopped early


# --- links ---------------------------------------------------------------------------------


def html(source: str) -> TemplateFields:
    return TemplateFields({"html_body": source})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('<a href="{{ link }}">x</a>', {"link"}),
        ("<A HREF='{{ user.url }}'><img src=\"{{ pic }}\"></A>", {"user.url", "pic"}),
        ("<img src = \"{{ i['k'] }}\">", {"i.k"}),
        ("<a href={{ bare }}>x</a>", {"bare"}),
        ('<a href="{{ link|trim }}">', {"link"}),
        ('<a href="java{{ rest }}">', {"rest"}),
        ('<a title="{{ t }}" href="{{ a }}{{ b }}">', {"a"}),
        ('<a href="https://example.com/{{ path }}">', set()),
        ('<a href="/{{ path }}">', set()),
        ('<!-- <a href="{{ c }}"> --><p>{{ c }}</p>', set()),
        ('{% for l in links %}<a href="{{ l }}">{% endfor %}', set()),  # a loop variable
        ("<p>{{ link }}</p>", set()),
    ],
)
def test_link_variables_are_those_that_start_a_url_attribute(
    source: str, expected: set[str]
) -> None:
    assert html(source).link_variables() == expected


def test_a_push_image_url_is_a_link_as_a_whole() -> None:
    push = channel_fields(
        "push", {"title": "t", "body": "b", "image_url": "{{ img }}", "data": {"k": "{{ v }}"}}
    )
    assert push.link_variables() == {"img"}
    fixed = channel_fields("push", {"title": "t", "body": "b", "image_url": "https://c/{{ img }}"})
    assert fixed.link_variables() == set()


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("https://example.com/a?b=c", True),
        ("HTTP://EXAMPLE.COM", True),
        ("mailto:someone@example.com", True),
        ("javascript:alert(1)", False),
        ("  JavaScript:alert(1)", False),
        ("java\tscript:alert(1)", False),
        ("\x01javascript:alert(1)", False),
        ("data:text/html,<script>", False),
        ("vbscript:x", False),
        ("/relative/path", False),
        ("//evil.example", False),
        ("", False),
    ],
)
def test_only_http_https_and_mailto_links_are_allowed(value: str, allowed: bool) -> None:
    assert is_allowed_link(value) is allowed


def test_a_render_refuses_a_link_variable_naming_it() -> None:
    source = '<a href="{{ link }}">go</a> <img src="{{ user.pic }}">'
    with pytest.raises(UnsafeLink) as exc:
        render(html(source), {"link": "javascript:alert(1)", "user": {"pic": "https://p"}})
    assert exc.value.names == ["link"] and exc.value.code == "unsafe_link"
    ok = render(html(source), {"link": "https://a/?x=1&y=2", "user": {"pic": "https://p"}})
    assert ok["html_body"] == '<a href="https://a/?x=1&amp;y=2">go</a> <img src="https://p">'


def test_an_unquoted_link_cannot_smuggle_another_attribute() -> None:
    with pytest.raises(UnsafeLink):
        render(html("<a href={{ link }}>go</a>"), {"link": "https://a onclick=alert(1)"})


def test_a_link_built_in_a_macro_is_checked_at_render() -> None:
    source = '{% macro go(u) %}<a href="{{ u }}">go</a>{% endmacro %}{{ go(link) }}'
    assert html(source).link_variables() == set()  # not visible statically...
    with pytest.raises(UnsafeLink):  # ...but refused when rendered
        render(html(source), {"link": "javascript:alert(1)"})


def test_unsafe_links_checks_stored_paths_without_rendering() -> None:
    variables = {"link": "javascript:x", "user": {"url": "https://ok"}, "items": [1], "n": 5}
    assert unsafe_links(["link", "user.url", "items.0", "absent", "n"], variables) == [
        "link",
        "n",
    ]
    assert unsafe_links(["user.url"], {"user": {"url": "data:x"}}) == ["user.url"]


def test_missing_variables_compares_stored_names_with_the_given_ones() -> None:
    assert missing_variables(["b", "a", "c"], {"c": 1}) == ["a", "b"]


def test_analyse_lists_required_and_link_variables() -> None:
    fields = channel_fields(
        "email", {"subject": "{{ s }}", "text_body": "{{ t }}", "html_body": '<a href="{{ u }}">'}
    )
    assert analyse(fields) == Analysis(variables=["s", "t", "u"], link_variables=["u"])
