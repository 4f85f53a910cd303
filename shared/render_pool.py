"""Untrusted template source is compiled and rendered in child processes that can be killed.

The renderer's own guards (`shared/rendering.py`) are cooperative: they run inside the render,
so a builtin that loops in C, or a guard someone forgot, holds the interpreter until it
finishes. A service that renders drafts from users (the template service: create, update,
preview, render) must not depend on that, so it hands each job to one of a few children and
holds two limits the template cannot touch:

- memory: each child caps its own address space (`RLIMIT_AS`) before it reads its first job,
  so a value that grows without bound raises `MemoryError` in the child, never in the service;
- time: the service waits at most `timeout_seconds` for the answer, then kills the child and
  starts another in the background. The child renders with a slightly smaller budget, so a
  template that only loops is usually stopped by its guard and the child lives on.

The service's event loop only writes and reads a pipe, so `/health` keeps answering while a
child burns a core. Children get an environment without the service's secrets, and jobs and
answers are JSON (never pickle: an answer is not trusted more than the template that made it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from shared.rendering import (
    Analysis,
    MissingVariables,
    RenderBudgetExceeded,
    RenderError,
    TemplateFields,
    TemplateSyntaxInvalid,
    UnsafeLink,
    analyse,
    render,
)

logger = logging.getLogger("shared.render_pool")

ROOT = Path(__file__).resolve().parents[1]
_HEADER = struct.Struct(">I")
# An answer is at most a few fields of `MAX_OUTPUT_CHARS` each; anything larger is refused.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# Of the hard timeout, the share the child's own budget gets (the rest covers the pipe).
CHILD_BUDGET_SHARE = 0.8
# How long a job waits for a free child, in hard timeouts, before the service answers 503.
QUEUE_TIMEOUTS = 5
_START_SECONDS = 30.0


class RenderPoolBusy(Exception):
    """Every child stayed busy for the whole wait: too many renders at once."""


class _Child:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, job: Mapping[str, Any]) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        payload = json.dumps(job).encode()
        self.process.stdin.write(_HEADER.pack(len(payload)) + payload)
        await self.process.stdin.drain()
        (size,) = _HEADER.unpack(await self.process.stdout.readexactly(_HEADER.size))
        if size > MAX_ANSWER_BYTES:
            raise RenderBudgetExceeded("the template produces too much output")
        return json.loads(await self.process.stdout.readexactly(size))

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()


class RenderPool:
    """A fixed number of render children; `analyse` and `render` take one for a single job.

    The children start on `start()` (a service's lifespan) or with the first job (a seed).
    """

    def __init__(self, *, workers: int, memory_bytes: int, timeout_seconds: float) -> None:
        self.workers = workers
        self.memory_bytes = memory_bytes
        self.timeout_seconds = timeout_seconds
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._children: set[_Child] = set()
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False
        self._started = False
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._start_lock:
            if not self._started:
                await asyncio.gather(*(self._add_child() for _ in range(self.workers)))
                self._started = True

    async def close(self) -> None:
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        for child in list(self._children):
            if child.process.stdin is not None:
                child.process.stdin.close()
            await child.kill()
        self._children.clear()

    async def analyse(self, template: TemplateFields) -> Analysis:
        """`shared.rendering.analyse` in a child: compile every field, list its variables."""
        answer = await self._run({"op": "analyse", **_fields_job(template)})
        return Analysis(answer["variables"], answer["link_variables"])

    async def render(
        self, template: TemplateFields, variables: Mapping[str, Any]
    ) -> dict[str, str | None]:
        """`shared.rendering.render` in a child; raises the same `RenderError`s."""
        rendered: dict[str, str | None] = await self._run(
            self._render_job("render", template, variables)
        )
        return rendered

    async def preview(
        self, template: TemplateFields, variables: Mapping[str, Any]
    ) -> tuple[Analysis, dict[str, str | None]]:
        """`analyse` and `render` of a draft as one job, so one timeout bounds the whole."""
        answer = await self._run(self._render_job("preview", template, variables))
        return Analysis(answer["variables"], answer["link_variables"]), answer["rendered"]

    def _render_job(
        self, op: str, template: TemplateFields, variables: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {
            "op": op,
            **_fields_job(template),
            "variables": dict(variables),
            "budget": self.timeout_seconds * CHILD_BUDGET_SHARE,
        }

    async def _run(self, job: Mapping[str, Any]) -> Any:
        await self.start()
        try:
            async with asyncio.timeout(self.timeout_seconds * QUEUE_TIMEOUTS):
                child = await self._idle.get()
        except TimeoutError as exc:
            raise RenderPoolBusy("every template renderer is busy") from exc
        try:
            async with asyncio.timeout(self.timeout_seconds):
                answer = await child.ask(job)
        except TimeoutError as exc:
            self._replace(child)
            raise RenderBudgetExceeded("the template took too long to render") from exc
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            # The child died (its memory limit, a crash) or answered nonsense.
            self._replace(child)
            raise RenderBudgetExceeded(
                "the template needs too much memory or broke the renderer"
            ) from exc
        except BaseException:
            self._replace(child)  # cancelled mid-job: the child's state is unknown
            raise
        self._idle.put_nowait(child)
        if "error" in answer:
            raise _error_from(answer["error"])
        return answer["ok"]

    def _replace(self, child: _Child) -> None:
        self._children.discard(child)
        task = asyncio.ensure_future(self._kill_and_add(child))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _kill_and_add(self, child: _Child) -> None:
        await child.kill()
        while not self._closed:
            try:
                await self._add_child()
                return
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                logger.error("could not start a template renderer: %s", exc)
                await asyncio.sleep(1.0)

    async def _add_child(self) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shared.render_pool",
            str(self.memory_bytes),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env=_child_environment(),
        )
        child = _Child(process)
        try:
            async with asyncio.timeout(_START_SECONDS):
                assert process.stdout is not None
                await process.stdout.readexactly(1)  # ready: limits set, modules imported
        except BaseException:
            await child.kill()
            raise
        self._children.add(child)
        self._idle.put_nowait(child)


def _fields_job(template: TemplateFields) -> dict[str, Any]:
    return {
        "fields": dict(template.fields),
        "html": sorted(template.html_fields),
        "url": sorted(template.url_fields),
    }


def _child_environment() -> dict[str, str]:
    """Just enough to start Python: none of the service's secrets or URLs."""
    env = {"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _error_from(error: Mapping[str, Any]) -> RenderError:
    kind = error.get("kind")
    if kind == "missing":
        return MissingVariables(list(error["names"]))
    if kind == "link":
        return UnsafeLink(list(error["names"]))
    if kind == "syntax":
        return TemplateSyntaxInvalid(error["field"], error["line"], error["reason"])
    if kind == "budget":
        return RenderBudgetExceeded(str(error["message"]))
    return RenderError(str(error.get("message", "render failed")))


def _error_to(exc: RenderError) -> dict[str, Any]:
    if isinstance(exc, MissingVariables):
        return {"kind": "missing", "names": exc.names}
    if isinstance(exc, UnsafeLink):
        return {"kind": "link", "names": exc.names}
    if isinstance(exc, TemplateSyntaxInvalid):
        return {"kind": "syntax", "field": exc.field, "line": exc.line, "reason": exc.reason}
    if isinstance(exc, RenderBudgetExceeded):
        return {"kind": "budget", "message": exc.message}
    return {"kind": "render", "message": exc.message}


# --- the child ------------------------------------------------------------------------------


def _answer(job: Mapping[str, Any]) -> dict[str, Any]:
    template = TemplateFields(
        job["fields"], html_fields=frozenset(job["html"]), url_fields=frozenset(job["url"])
    )
    try:
        if job["op"] == "render":
            return {"ok": render(template, job["variables"], time_budget=job["budget"])}
        found = analyse(template)
        answer: dict[str, Any] = {
            "variables": found.variables,
            "link_variables": found.link_variables,
        }
        if job["op"] == "preview":
            answer["rendered"] = render(template, job["variables"], time_budget=job["budget"])
        return {"ok": answer}
    except RenderError as exc:
        return {"error": _error_to(exc)}
    except MemoryError:
        return {"error": {"kind": "budget", "message": "the template needs too much memory"}}


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def child_main(memory_bytes: int) -> None:
    """Serve jobs on stdin/stdout until the service closes the pipe (or kills us)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    jobs = sys.stdin.buffer
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot corrupt a frame
    answers.write(b"R")
    while True:
        try:
            (size,) = _HEADER.unpack(_read_exactly(jobs, _HEADER.size))
            frame = _read_exactly(jobs, size)
        except EOFError:
            return
        try:
            payload = json.dumps(_answer(json.loads(frame))).encode()
        except MemoryError:
            payload = b'{"error": {"kind": "budget", "message": "out of memory"}}'
        except Exception as exc:  # a job this child cannot handle fails alone; the child lives
            payload = json.dumps(
                {"error": {"kind": "render", "message": f"render failed: {type(exc).__name__}"}}
            ).encode()
        answers.write(_HEADER.pack(len(payload)) + payload)


if __name__ == "__main__":
    child_main(int(sys.argv[1]))
