"""The committed contracts in `docs/openapi/` are what the apps serve.

A service that does not exist yet is skipped; once it does, its contract must be committed
(`make openapi`).
"""

from __future__ import annotations

import pytest

from scripts.export_openapi import (
    SERVICES,
    ServiceMissing,
    contract_path,
    main,
    openapi_of,
    render,
)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_contract_matches_the_app(name: str) -> None:
    try:
        spec = openapi_of(SERVICES[name])
    except ServiceMissing as exc:
        pytest.skip(str(exc))
    path = contract_path(name)
    assert path.exists(), f"{path.name} is missing: run `make openapi` and commit it"
    assert path.read_text() == render(spec), f"{path.name} drifted: run `make openapi`"


def test_contract_is_openapi_3_with_the_envelope_title(tmp_path: object) -> None:
    present = []
    for name, package in SERVICES.items():
        try:
            spec = openapi_of(package)
        except ServiceMissing:
            continue
        present.append(name)
        assert spec["openapi"].startswith("3."), name
        assert spec["info"]["title"], name
        assert spec["paths"], name
    if not present:
        pytest.skip("no service app exists yet")


def test_check_mode_reports_a_missing_package_as_skipped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(SERVICES, "not-a-service", "services.not_a_service_at_all")
    main(["--check"])
    assert "skip not-a-service" in capsys.readouterr().err
