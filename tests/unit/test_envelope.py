"""Every failure leaves a service as the common envelope with a stable code (shared/errors.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import BaseModel, ConfigDict

from shared.envelope import PageMeta, ok
from shared.errors import NotFound
from shared.http import create_service_app


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    count: int


def _app():  # type: ignore[no-untyped-def]
    app = create_service_app(service="test", title="test", max_body_bytes=1024)

    @app.post("/items", status_code=201)
    async def create(item: Item) -> dict[str, object]:
        return ok(item.model_dump(), message="created")

    @app.get("/items/{item_id}")
    async def read(item_id: int) -> dict[str, object]:
        raise NotFound(f"item {item_id} does not exist", code="item_not_found")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail that must not leak")

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def _is_envelope(body: dict[str, object]) -> bool:
    return {"success", "data", "error", "message", "meta"} <= body.keys()


async def test_success_is_wrapped(client: httpx.AsyncClient) -> None:
    response = await client.post("/items", json={"name": "a", "count": 1})
    assert response.status_code == 201
    assert response.json() == {
        "success": True,
        "data": {"name": "a", "count": 1},
        "error": None,
        "message": "created",
        "meta": None,
    }


async def test_malformed_json_is_400_invalid_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/items", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"
    assert _is_envelope(response.json())


async def test_wrong_type_is_422_with_field_details(client: httpx.AsyncClient) -> None:
    response = await client.post("/items", json={"name": "a", "count": "many", "extra": 1})
    body = response.json()
    assert response.status_code == 422
    assert body["error"] == "validation_error" and body["success"] is False
    assert {d["field"] for d in body["details"]} == {"count", "extra"}


async def test_unknown_route_is_404_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    response = await client.delete("/items")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


async def test_raised_app_error_keeps_its_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/7")
    assert response.status_code == 404
    assert response.json()["error"] == "item_not_found"


async def test_internal_error_is_500_without_trace(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "secret detail" not in response.text and "Traceback" not in response.text


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/items", content=b"x" * 2048, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


async def test_oversized_chunked_body_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 512

    response = await client.post(
        "/items", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_correlation_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/nowhere", headers={"X-Correlation-ID": "abc-123"})
    assert given.headers["x-correlation-id"] == "abc-123"
    made = await client.get("/nowhere", headers={"X-Correlation-ID": "bad id\x7f"})
    assert made.headers["x-correlation-id"] not in ("", "bad id\x7f")


def test_page_meta_arithmetic() -> None:
    meta = PageMeta.build(total=45, page=2, limit=20)
    assert (meta.total_pages, meta.has_next, meta.has_previous) == (3, True, True)
    assert PageMeta.build(total=0, page=1, limit=20).has_next is False
