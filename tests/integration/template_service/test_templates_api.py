"""The template service's public API against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.integration.template_service.conftest import email_body, push_body

Headers = dict[str, str]


async def _create(client: httpx.AsyncClient, admin: Headers, body: dict[str, Any]) -> Any:
    response = await client.post("/api/v1/templates", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def _put(
    client: httpx.AsyncClient, admin: Headers, code: str, **fields: Any
) -> httpx.Response:
    return await client.put(f"/api/v1/templates/{code}", json=fields, headers=admin)


async def test_create_records_first_active_version_with_parsed_variables(
    ts_client: httpx.AsyncClient, admin: Headers, user: Headers, code: str
) -> None:
    created = await _create(ts_client, admin, email_body(code))
    assert created["version"]["version"] == 1
    assert created["version"]["locale"] == "en"
    assert created["version"]["variables"] == ["link", "name"]
    assert created["template"]["locales"] == [
        {"locale": "en", "active_version": 1, "latest_version": 1}
    ]

    again = await ts_client.post("/api/v1/templates", json=email_body(code), headers=admin)
    assert again.status_code == 409
    assert again.json()["error"] == "template_exists"

    # The same code on the other channel is another template.
    await _create(ts_client, admin, push_body(code))
    detail = (await ts_client.get(f"/api/v1/templates/{code}", headers=user)).json()["data"]
    assert [c["channel"] for c in detail["channels"]] == ["email", "push"]
    assert detail["channels"][0]["active_versions"][0]["subject"] == "Welcome, {{ name }}!"


async def test_list_is_paged_and_filtered(
    ts_client: httpx.AsyncClient, admin: Headers, user: Headers, code: str
) -> None:
    for n in range(3):
        await _create(ts_client, admin, email_body(f"{code}-{n}"))
    await _create(ts_client, admin, push_body(f"{code}-0"))
    await _put(
        ts_client,
        admin,
        f"{code}-1",
        channel="email",
        locale="pt-BR",
        subject="Olá",
        text_body="Olá",
    )

    response = await ts_client.get(
        "/api/v1/templates", params={"code": code, "limit": 2}, headers=user
    )
    body = response.json()
    assert response.status_code == 200
    assert body["meta"] == {
        "total": 4,
        "limit": 2,
        "page": 1,
        "total_pages": 2,
        "has_next": True,
        "has_previous": False,
    }
    push_only = await ts_client.get(
        "/api/v1/templates", params={"code": code, "channel": "push"}, headers=user
    )
    assert [(t["code"], t["channel"]) for t in push_only.json()["data"]] == [(f"{code}-0", "push")]
    by_locale = await ts_client.get(
        "/api/v1/templates", params={"code": code, "locale": "pt_br"}, headers=user
    )
    assert [t["code"] for t in by_locale.json()["data"]] == [f"{code}-1"]


async def test_put_adds_versions_and_activate_rolls_back(
    ts_client: httpx.AsyncClient, admin: Headers, user: Headers, code: str
) -> None:
    await _create(ts_client, admin, email_body(code))
    second = await _put(
        ts_client, admin, code, channel="email", subject="v2 {{ name }}", text_body="two"
    )
    assert second.status_code == 200, second.text
    assert second.json()["data"]["version"] == 2
    assert second.json()["data"]["variables"] == ["name"]

    render = {"channel": "email", "variables": {"name": "Ana", "link": "https://x"}}
    rendered = (
        await ts_client.post(f"/api/v1/templates/{code}/render", json=render, headers=user)
    ).json()["data"]
    assert (rendered["version"], rendered["rendered"]["subject"]) == (2, "v2 Ana")

    rollback = await ts_client.post(
        f"/api/v1/templates/{code}/versions/1/activate", json={"channel": "email"}, headers=admin
    )
    assert rollback.status_code == 200
    rendered = (
        await ts_client.post(f"/api/v1/templates/{code}/render", json=render, headers=user)
    ).json()["data"]
    assert (rendered["version"], rendered["rendered"]["subject"]) == (1, "Welcome, Ana!")

    pinned = await ts_client.post(
        f"/api/v1/templates/{code}/render", json={**render, "version": 2}, headers=user
    )
    assert pinned.json()["data"]["rendered"]["text_body"] == "two"

    versions = (
        await ts_client.get(
            f"/api/v1/templates/{code}/versions", params={"channel": "email"}, headers=user
        )
    ).json()
    assert [(v["version"], v["active"]) for v in versions["data"]] == [(2, False), (1, True)]
    assert versions["meta"]["total"] == 2

    # A third save continues the numbering after the rollback, and is active.
    third = await _put(ts_client, admin, code, channel="email", subject="v3", text_body="3")
    assert third.json()["data"]["version"] == 3

    missing = await ts_client.post(
        f"/api/v1/templates/{code}/versions/9/activate", json={"channel": "email"}, headers=admin
    )
    assert missing.status_code == 404
    assert missing.json()["error"] == "template_version_not_found"


async def test_locale_falls_back_from_region_to_language_to_default(
    ts_client: httpx.AsyncClient, admin: Headers, internal: Headers, code: str
) -> None:
    await _create(ts_client, admin, email_body(code))

    async def active(locale: str) -> httpx.Response:
        return await ts_client.get(
            f"/internal/v1/templates/{code}/active",
            params={"channel": "email", "locale": locale},
            headers=internal,
        )

    assert (await active("pt-BR")).json()["data"]["locale"] == "en"
    await _put(
        ts_client,
        admin,
        code,
        channel="email",
        locale="pt",
        subject="Olá {{ name }}",
        text_body="pt",
    )
    assert (await active("pt-BR")).json()["data"]["locale"] == "pt"
    await _put(
        ts_client,
        admin,
        code,
        channel="email",
        locale="pt-BR",
        subject="Oi {{ name }}",
        text_body="br",
    )
    found = (await active("pt_br")).json()["data"]
    assert (found["locale"], found["version"], found["subject"]) == ("pt-BR", 1, "Oi {{ name }}")
    assert (await active("fr")).json()["data"]["locale"] == "en"

    rendered = await ts_client.post(
        f"/api/v1/templates/{code}/render",
        json={"channel": "email", "locale": "pt-PT", "variables": {"name": "Rui"}},
        headers=internal,
    )
    assert rendered.json()["data"]["locale"] == "pt"
    assert rendered.json()["data"]["rendered"]["subject"] == "Olá Rui"

    bad = await active("not a locale")
    assert bad.status_code == 422


async def test_no_version_in_the_fallback_chain_is_not_found(
    ts_client: httpx.AsyncClient, admin: Headers, internal: Headers, code: str
) -> None:
    await _create(ts_client, admin, email_body(code, locale="fr"))
    response = await ts_client.get(
        f"/internal/v1/templates/{code}/active",
        params={"channel": "email", "locale": "de"},
        headers=internal,
    )
    assert response.status_code == 404
    assert response.json()["error"] == "template_not_found"


async def test_missing_variables_are_all_listed_and_nothing_renders(
    ts_client: httpx.AsyncClient, admin: Headers, user: Headers, code: str
) -> None:
    await _create(ts_client, admin, email_body(code, text_body="{{ name }} {{ link }} {{ code }}"))
    response = await ts_client.post(
        f"/api/v1/templates/{code}/render",
        json={"channel": "email", "variables": {"name": "Ana"}},
        headers=user,
    )
    body = response.json()
    assert response.status_code == 422
    assert body["error"] == "missing_variables"
    assert body["data"] is None
    assert [d["field"] for d in body["details"]] == ["variables.code", "variables.link"]
    assert "code, link" in body["message"]


async def test_html_body_escapes_variables_and_text_fields_do_not(
    ts_client: httpx.AsyncClient, admin: Headers, user: Headers, code: str
) -> None:
    await _create(ts_client, admin, email_body(code))
    response = await ts_client.post(
        f"/api/v1/templates/{code}/render",
        json={
            "channel": "email",
            "variables": {"name": "<script>x</script>", "link": "https://x/?a&b"},
        },
        headers=user,
    )
    rendered = response.json()["data"]["rendered"]
    assert rendered["subject"] == "Welcome, <script>x</script>!"
    assert rendered["text_body"] == "Hi <script>x</script>, start here: https://x/?a&b"
    assert rendered["html_body"] == (
        '<p>Hi &lt;script&gt;x&lt;/script&gt;, <a href="https://x/?a&amp;b">start</a></p>'
    )


async def test_push_render_folds_data_back_into_a_map(
    ts_client: httpx.AsyncClient, admin: Headers, internal: Headers, code: str
) -> None:
    await _create(ts_client, admin, push_body(code, image_url="https://img/{{ name }}.png"))
    response = await ts_client.post(
        f"/api/v1/templates/{code}/render",
        json={"channel": "push", "variables": {"name": "Ana", "link": "https://x"}},
        headers=internal,
    )
    rendered = response.json()["data"]["rendered"]
    assert rendered == {
        "title": "Welcome, Ana!",
        "body": "Hi Ana",
        "image_url": "https://img/Ana.png",
        "data": {"link": "https://x"},
    }


async def test_syntax_error_on_save_names_field_and_line(
    ts_client: httpx.AsyncClient, admin: Headers, code: str
) -> None:
    body = email_body(code, html_body="<p>ok</p>\n<p>{{ name }</p>\n")
    response = await ts_client.post("/api/v1/templates", json=body, headers=admin)
    assert response.status_code == 422
    payload = response.json()
    assert payload["error"] == "template_syntax_error"
    assert payload["details"][0]["field"] == "html_body"
    assert payload["details"][0]["message"] == "line 2: unexpected '}'"
    assert payload["message"] == "html_body: line 2: unexpected '}'"
    unknown_filter = email_body(code, subject="{{ name|nope }}")
    response = await ts_client.post("/api/v1/templates", json=unknown_filter, headers=admin)
    assert response.json()["error"] == "template_syntax_error"
    assert "line 1" in response.json()["message"]


async def test_fields_must_fit_the_channel(
    ts_client: httpx.AsyncClient, admin: Headers, code: str
) -> None:
    no_subject = email_body(code)
    del no_subject["subject"]
    response = await ts_client.post("/api/v1/templates", json=no_subject, headers=admin)
    assert response.status_code == 422
    assert response.json()["details"] == [{"field": "subject", "message": "required for email"}]
    mixed = email_body(code, title="push title")
    response = await ts_client.post("/api/v1/templates", json=mixed, headers=admin)
    assert response.json()["details"] == [{"field": "title", "message": "not a field of email"}]
    newline_subject = email_body(code, subject="a\r\nBcc: x@y")
    response = await ts_client.post("/api/v1/templates", json=newline_subject, headers=admin)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_hostile_templates_fail_with_render_failed(
    ts_client: httpx.AsyncClient, admin: Headers
) -> None:
    for source in (
        "{{ name.__class__.__mro__ }}",
        "{{ range(10**9)|list }}",
        "{% for a in range(9999) %}{% for b in range(9999) %}{% for c in range(9999) %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        "{{ 'x' * 1000000000 }}",
    ):
        response = await ts_client.post(
            "/api/v1/templates/preview",
            json={
                "channel": "email",
                "subject": "s",
                "text_body": source,
                "variables": {"name": "x"},
            },
            headers=admin,
        )
        assert response.status_code == 422, source
        assert response.json()["error"] == "template_render_failed", source


async def test_preview_renders_a_draft(ts_client: httpx.AsyncClient, admin: Headers) -> None:
    response = await ts_client.post(
        "/api/v1/templates/preview",
        json={"channel": "push", "title": "Hi {{ name }}", "body": "b", "variables": {"name": "A"}},
        headers=admin,
    )
    assert response.status_code == 200
    assert response.json()["data"]["rendered"]["title"] == "Hi A"
    assert response.json()["data"]["variables"] == ["name"]


async def test_writes_need_an_admin_and_reads_any_token_or_the_internal_key(
    ts_client: httpx.AsyncClient, admin: Headers, user: Headers, internal: Headers, code: str
) -> None:
    body = email_body(code)
    for headers, status, error in (
        ({}, 401, "unauthorized"),
        (user, 403, "forbidden"),
        (internal, 401, "unauthorized"),
        ({"Authorization": "Bearer not-a-jwt"}, 401, "invalid_token"),
    ):
        response = await ts_client.post("/api/v1/templates", json=body, headers=headers)
        assert (response.status_code, response.json()["error"]) == (status, error)
        response = await ts_client.delete(f"/api/v1/templates/{code}", headers=headers)
        assert response.status_code == status
    await _create(ts_client, admin, body)
    put = await _put(ts_client, user, code, channel="email", subject="s", text_body="t")
    assert put.status_code == 403

    for headers in (user, admin, internal):
        response = await ts_client.get(f"/api/v1/templates/{code}", headers=headers)
        assert response.status_code == 200
    for headers, error in (
        ({}, "unauthorized"),
        ({"X-Internal-API-Key": "wrong"}, "invalid_internal_key"),
    ):
        response = await ts_client.get(f"/api/v1/templates/{code}", headers=headers)
        assert (response.status_code, response.json()["error"]) == (401, error)
    response = await ts_client.get(
        f"/internal/v1/templates/{code}/active", params={"channel": "email"}, headers=user
    )
    assert response.status_code == 401


async def test_concurrent_puts_never_share_a_version_number(
    ts_client: httpx.AsyncClient, admin: Headers, user: Headers, code: str
) -> None:
    await _create(ts_client, admin, email_body(code))
    responses = await asyncio.gather(
        *(
            _put(ts_client, admin, code, channel="email", subject=f"s{n}", text_body=f"t{n}")
            for n in range(12)
        )
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    numbers = sorted(r.json()["data"]["version"] for r in responses)
    assert numbers == list(range(2, 14))
    versions = await ts_client.get(
        f"/api/v1/templates/{code}/versions",
        params={"channel": "email", "limit": 100},
        headers=user,
    )
    assert versions.json()["meta"]["total"] == 13


async def test_soft_delete_hides_the_template_but_pinned_versions_still_serve(
    ts_client: httpx.AsyncClient, admin: Headers, user: Headers, internal: Headers, code: str
) -> None:
    await _create(ts_client, admin, email_body(code))
    await _create(ts_client, admin, push_body(code))
    deleted = await ts_client.delete(
        f"/api/v1/templates/{code}", params={"channel": "email"}, headers=admin
    )
    assert deleted.json()["data"] == {"code": code, "channels": ["email"]}

    assert (
        await ts_client.get(f"/api/v1/templates/{code}", params={"channel": "email"}, headers=user)
    ).status_code == 404
    render = await ts_client.post(
        f"/api/v1/templates/{code}/render", json={"channel": "email", "variables": {}}, headers=user
    )
    assert render.json()["error"] == "template_not_found"
    active = await ts_client.get(
        f"/internal/v1/templates/{code}/active", params={"channel": "email"}, headers=internal
    )
    assert active.status_code == 404
    pinned = await ts_client.get(
        f"/internal/v1/templates/{code}/versions/1",
        params={"channel": "email", "locale": "en"},
        headers=internal,
    )
    assert pinned.status_code == 200
    assert pinned.json()["data"]["subject"] == "Welcome, {{ name }}!"
    # The push template of the same code is untouched.
    assert (await ts_client.get(f"/api/v1/templates/{code}", headers=user)).status_code == 200

    # Creating it again brings it back; numbering continues, so version 1 stays unambiguous.
    recreated = await _create(ts_client, admin, email_body(code, subject="new"))
    assert recreated["version"]["version"] == 2


async def test_health_reports_the_database(ts_client: httpx.AsyncClient) -> None:
    response = await ts_client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["data"]["checks"] == {"db": "up"}


async def test_swagger_ui_and_openapi_are_served(ts_client: httpx.AsyncClient) -> None:
    assert (await ts_client.get("/api/docs")).status_code == 200
    spec = (await ts_client.get("/api/openapi.json")).json()
    assert "/internal/v1/templates/{code}/versions/{version}" in spec["paths"]


async def test_a_template_is_transactional_unless_created_or_updated_otherwise(
    ts_client: httpx.AsyncClient, admin: Headers, user: Headers, internal: Headers, code: str
) -> None:
    plain = await _create(ts_client, admin, email_body(code))
    assert plain["template"]["category"] == plain["version"]["category"] == "transactional"

    news = await _create(ts_client, admin, {**email_body(f"{code}-news"), "category": "marketing"})
    assert news["template"]["category"] == news["version"]["category"] == "marketing"
    # What the gateway reads to build the message, and the workers for a pinned version.
    active = await ts_client.get(
        f"/internal/v1/templates/{code}-news/active", params={"channel": "email"}, headers=internal
    )
    assert active.json()["data"]["category"] == "marketing"

    # An update without a category keeps it; with one, it changes for every version.
    kept = await _put(ts_client, admin, f"{code}-news", channel="email", subject="S", text_body="T")
    assert kept.json()["data"]["category"] == "marketing"
    changed = await _put(
        ts_client, admin, code, channel="email", subject="S", text_body="T", category="marketing"
    )
    assert changed.json()["data"]["category"] == "marketing"
    pinned = await ts_client.get(
        f"/internal/v1/templates/{code}/versions/1",
        params={"channel": "email", "locale": "en"},
        headers=internal,
    )
    assert pinned.json()["data"]["category"] == "marketing"
    listed = await ts_client.get("/api/v1/templates", params={"code": code}, headers=user)
    assert {t["category"] for t in listed.json()["data"]} == {"marketing"}
    await _create(ts_client, admin, email_body(f"{code}-receipt"))
    marketing = await ts_client.get(
        "/api/v1/templates", params={"code": code, "category": "marketing"}, headers=user
    )
    assert sorted(t["code"] for t in marketing.json()["data"]) == [code, f"{code}-news"]

    unknown = await ts_client.post(
        "/api/v1/templates", json={**email_body(f"{code}-x"), "category": "spam"}, headers=admin
    )
    assert unknown.status_code == 422
    assert unknown.json()["details"][0]["field"] == "category"
