"""The render pool's hard limits: they hold where the renderer's own guards do not reach."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from shared.render_pool import RenderPool, _child_environment
from shared.rendering import (
    Analysis,
    MissingVariables,
    RenderBudgetExceeded,
    TemplateFields,
    TemplateSyntaxInvalid,
    UnsafeLink,
)

MiB = 1024 * 1024
# textwrap breaking one long word: pure Python inside a single filter call, so no guard runs
# until it returns (about 5 s here); only a kill stops it.
LOOPS_OUTSIDE_THE_GUARDS = "{{ ('x' * 250000)|wordwrap(1)|length }}"
# A thousand strings of 250,000 characters: each allowed by the size guard, 250 MB together.
GROWS_PAST_THE_MEMORY_LIMIT = "{{ range(1000)|map('center', 250000)|list|length }}"


def text(source: str) -> TemplateFields:
    return TemplateFields({"text_body": source})


@pytest.fixture
async def pool() -> AsyncIterator[RenderPool]:
    running = RenderPool(workers=2, memory_bytes=192 * MiB, timeout_seconds=0.5)
    await running.start()
    yield running
    await running.close()


async def test_a_job_that_loops_where_no_guard_runs_is_killed_at_the_timeout(
    pool: RenderPool,
) -> None:
    started = time.monotonic()
    with pytest.raises(RenderBudgetExceeded, match="too long"):
        await pool.render(text(LOOPS_OUTSIDE_THE_GUARDS), {})
    assert time.monotonic() - started < 1.0
    # The other child serves at once; the killed one is replaced.
    assert await pool.render(text("{{ 1 + 1 }}"), {}) == {"text_body": "2"}


async def test_a_job_that_grows_past_the_memory_limit_fails_and_the_pool_serves_on(
    pool: RenderPool,
) -> None:
    with pytest.raises(RenderBudgetExceeded, match="memory"):
        await pool.render(text(GROWS_PAST_THE_MEMORY_LIMIT), {})
    for _ in range(3):
        assert await pool.render(text("{{ n }}"), {"n": 7}) == {"text_body": "7"}


async def test_errors_come_back_as_the_renderers_own(pool: RenderPool) -> None:
    with pytest.raises(MissingVariables) as missing:
        await pool.render(text("{{ a }}{{ b }}"), {})
    assert missing.value.names == ["a", "b"]
    with pytest.raises(TemplateSyntaxInvalid) as syntax:
        await pool.analyse(TemplateFields({"subject": "ok", "text_body": "{% for %}"}))
    assert (syntax.value.field, syntax.value.line) == ("text_body", 1)
    with pytest.raises(UnsafeLink) as link:
        await pool.render(TemplateFields({"html_body": '<a href="{{ u }}">'}), {"u": "data:x"})
    assert link.value.names == ["u"]


async def test_analyse_lists_what_a_version_needs(pool: RenderPool) -> None:
    fields = TemplateFields({"subject": "{{ s }}", "html_body": '<img src="{{ pic.url }}">'})
    assert await pool.analyse(fields) == Analysis(["pic", "s"], ["pic.url"])


def test_children_start_without_the_services_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "s3cret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    env = _child_environment()
    assert "JWT_SECRET" not in env and "DATABASE_URL" not in env
    assert set(env) <= {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PATH", "LANG", "LC_ALL"}
