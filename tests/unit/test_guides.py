"""The guides keep up with the code: every variable, metric and alert rule is documented."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GUIDES = ROOT / "docs" / "guides"
METRIC = re.compile(r"(?:Counter|Histogram|Gauge|Summary)\(\s*\"(notifications?_\w+)\"")


def test_every_guide_exists() -> None:
    for name in (
        "getting-started",
        "configuration",
        "operations",
        "monitoring",
        "troubleshooting",
    ):
        assert (GUIDES / f"{name}.md").read_text().strip(), name


def test_configuration_documents_every_variable_of_env_example() -> None:
    variables = re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    guide = (GUIDES / "configuration.md").read_text()
    missing = [v for v in variables if f"`{v}`" not in guide]
    assert not missing, f"document in docs/guides/configuration.md: {missing}"


def test_monitoring_documents_every_metric_and_alert() -> None:
    guide = (GUIDES / "monitoring.md").read_text()
    metrics = {
        name
        for folder in ("shared", "services")
        for path in (ROOT / folder).rglob("*.py")
        for name in METRIC.findall(path.read_text())
    }
    assert metrics
    missing = sorted(m for m in metrics if f"`{m}`" not in guide)
    assert not missing, f"document in docs/guides/monitoring.md: {missing}"
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"]]
    assert not [a for a in alerts if f"`{a}`" not in guide]
