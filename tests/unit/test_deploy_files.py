"""The deployment files agree with the code: no Docker engine runs here, so check statically.

- `docker-compose.yml` against the Compose Specification JSON Schema (vendored in
  `deploy/schema/`, no network), its services and ports against `shared/settings.py`;
- the Dockerfile's paths exist and the image runs as a non-root user;
- `deploy/k8s` renders with `kubectl kustomize` (when a kubectl or kustomize binary is on PATH;
  otherwise the listed resources and components are loaded as they are) and has probes,
  autoscaling (a CPU HPA for the gateway, KEDA on the queues for the workers), disruption
  budgets, spread and grace periods and services that match the settings;
- the Prometheus rules only use metrics the code defines;
- the RabbitMQ definitions name the topology's exchanges and queues (the exact comparison
  against the broker is `tests/integration/test_rabbit_definitions.py`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from shared.messaging.topology import (
    DEAD_LETTER_EXCHANGE,
    FAILED_QUEUE,
    WORK_EXCHANGE,
    WORK_QUEUES,
    delay_queue_name,
)
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = Settings(_env_file=None)

# compose service -> (SERVICE value, settings field of its port, health path)
APP_SERVICES = {
    "api-gateway": ("api_gateway", "api_gateway_port", "/health"),
    "user-service": ("user_service", "user_service_port", "/api/v1/health"),
    "template-service": ("template_service", "template_service_port", "/api/v1/health"),
    "email-service": ("email_service", "email_service_port", "/health"),
    "push-service": ("push_service", "push_service_port", "/health"),
}
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _yaml_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = _yaml(ROOT / "docker-compose.yml")
    return loaded


def _published(service: dict[str, Any]) -> set[tuple[int, int]]:
    pairs = set()
    for entry in service.get("ports", []):
        host, _, container = str(entry).rpartition(":")
        pairs.add((int(host), int(container)))
    return pairs


# --- docker compose ---------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "deploy" / "schema" / "compose-spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_compose_runs_each_service_once_on_its_settings_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, (service, port_field, _) in APP_SERVICES.items():
        assert name in services, f"{name} missing from docker-compose.yml"
        assert services[name]["environment"]["SERVICE"] == service
        assert (ROOT / "services" / service).is_dir() or service in _entrypoint_choices()
        port = getattr(DEFAULTS, port_field)
        assert _published(services[name]) == {(port, port)}, name
    selected = [s.get("environment", {}).get("SERVICE") for s in services.values()]
    assert sorted(s for s in selected if s in {v[0] for v in APP_SERVICES.values()}) == sorted(
        v[0] for v in APP_SERVICES.values()
    )


def test_compose_infrastructure_ports_match_the_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert (urlparse(DEFAULTS.database_url).port, 5432) in _published(services["postgres"])
    assert (urlparse(DEFAULTS.redis_url).port, 6379) in _published(services["redis"])
    assert (urlparse(DEFAULTS.rabbitmq_url).port, 5672) in _published(services["rabbitmq"])
    assert (15672, 15672) in _published(services["rabbitmq"])  # management UI
    mailpit = _published(services["mailpit"])
    assert (DEFAULTS.smtp_port, 1025) in mailpit
    assert (DEFAULTS.inbox_http_port, 8025) in mailpit
    fcm = services["fcm-standin"]
    assert fcm["environment"]["SERVICE"] == "fcm_standin"
    assert _published(fcm) == {(DEFAULTS.fcm_standin_port, DEFAULTS.fcm_standin_port)}


def test_compose_urls_point_at_compose_services_and_settings_ports(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    env = services["api-gateway"]["environment"]
    for variable, target in {
        "USER_SERVICE_URL": "user-service",
        "TEMPLATE_SERVICE_URL": "template-service",
        "API_GATEWAY_URL": "api-gateway",
        "EMAIL_SERVICE_URL": "email-service",
        "PUSH_SERVICE_URL": "push-service",
        "FCM_BASE_URL": "fcm-standin",
    }.items():
        url = urlparse(env[variable])
        assert url.hostname == target and url.hostname in services, variable
        assert (url.port, url.port) in _published(services[target]), variable
    assert env["SMTP_HOST"] in services
    assert env["BIND_HOST"] == "0.0.0.0"


def test_compose_environment_names_are_settings(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        unknown = set(service["environment"]) - SETTING_NAMES - {"SERVICE"}
        assert not unknown, f"{name}: not settings: {sorted(unknown)}"


# Secrets the compose file must take from the environment with no fallback.
COMPOSE_SECRETS = (
    "INTERNAL_API_KEY",
    "UNSUBSCRIBE_SECRET",
    "POSTGRES_PASSWORD",
    "RABBITMQ_PASSWORD",
    "JWT_PRIVATE_KEY",
)


def test_compose_secrets_have_no_usable_default() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in COMPOSE_SECRETS:
        uses = re.findall(r"\$\{" + name + r"(:?[-?=+])?[^}]*\}", text)
        assert uses, f"{name} is not read from the environment"
        assert set(uses) == {":?"}, f"{name} must be `${{{name}:?message}}`"
    assert "DEMO_" not in text and "JWT_SECRET" not in text


def test_compose_gives_the_signing_key_to_the_user_service_only(compose: dict[str, Any]) -> None:
    holders = {
        name
        for name, service in compose["services"].items()
        if "JWT_PRIVATE_KEY" in (service.get("environment") or {})
    }
    assert holders == {"user-service"}


def test_compose_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    one_shots = {n for n, s in services.items() if s.get("healthcheck", {}).get("disable")}
    assert one_shots == {"migrate"}
    for name, service in services.items():
        if name not in one_shots:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = (
                "service_completed_successfully" if dependency in one_shots else "service_healthy"
            )
            assert rule["condition"] == expected, f"{name} -> {dependency}"
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert {"postgres", "redis", "rabbitmq", "migrate"} <= set(depends), name


# --- Dockerfile -------------------------------------------------------------------------------


def _entrypoint_choices() -> set[str]:
    text = (ROOT / "deploy" / "docker" / "entrypoint.sh").read_text()
    return {
        choice.strip()
        for line in re.findall(r"^\s+([a-z_| ]+)\)\s*$", text, re.M)
        for choice in line.split("|")
    }


def test_dockerfile_copies_only_existing_paths_and_runs_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    copies = re.findall(r"^COPY\s+(?!--from)(.+)$", text, re.M)
    assert copies
    for line in copies:
        *sources, _destination = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert re.search(r"^FROM .+ AS builder$", text, re.M)
    assert re.search(r"uv sync --frozen --no-dev", text)
    users = re.findall(r"^USER\s+(\S+)$", text, re.M)
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    for path in re.findall(r"/app/(deploy/docker/\S+?)[\"\s]", text):
        assert (ROOT / path).exists(), path


def test_dockerignore_keeps_what_the_image_needs() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in ("pyproject.toml", "uv.lock", "shared", "services", "scripts", "deploy/docker"):
        assert needed not in ignored and "deploy" not in ignored, needed


def test_entrypoint_and_healthcheck_know_every_service() -> None:
    choices = _entrypoint_choices()
    assert {v[0] for v in APP_SERVICES.values()} <= choices
    assert {"fcm_standin", "smtp_inbox", "migrate", "migrate_and_seed"} <= choices
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "container_healthcheck", ROOT / "deploy" / "docker" / "healthcheck.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for service, port_field, path in APP_SERVICES.values():
        assert module.HEALTH_PATHS[service] == (port_field, path)
        assert module.health_url(service, DEFAULTS).endswith(
            f":{getattr(DEFAULTS, port_field)}{path}"
        )


# --- Kubernetes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    """The rendered kustomization, or its resources as they are if no renderer is installed."""
    directory = ROOT / "deploy" / "k8s"
    kubectl, kustomize = shutil.which("kubectl"), shutil.which("kustomize")
    if kubectl or kustomize:
        command = [kubectl, "kustomize"] if kubectl else [kustomize, "build"]
        result = subprocess.run(
            [*command, str(directory)], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        return _yaml_all(result.stdout)
    kustomization = _yaml(directory / "kustomization.yaml")
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs += _yaml_all((directory / resource).read_text())
    for component in kustomization.get("components", []):
        for resource in _yaml(directory / component / "kustomization.yaml")["resources"]:
            docs += _yaml_all((directory / component / resource).read_text())
    return docs


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_k8s_resources_are_well_formed(k8s: list[dict[str, Any]]) -> None:
    for doc in k8s:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert doc["metadata"].get("name"), doc


def test_k8s_deployments_have_probes_on_the_health_paths(k8s: list[dict[str, Any]]) -> None:
    deployments = _by_kind(k8s, "Deployment")
    services = _by_kind(k8s, "Service")
    assert set(deployments) == set(APP_SERVICES)
    for name, (service, port_field, health) in APP_SERVICES.items():
        pod = deployments[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        port = getattr(DEFAULTS, port_field)
        assert {"name": "SERVICE", "value": service} in container["env"]
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        assert container["readinessProbe"]["httpGet"]["path"] == health
        assert container["livenessProbe"], name
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["resources"]["requests"], name
        selector = deployments[name]["spec"]["selector"]["matchLabels"]
        assert services[name]["spec"]["selector"] == selector
        assert services[name]["spec"]["ports"][0]["port"] == port


WORKER_DEPLOYMENTS = {f"{channel.value}-service": channel for channel in WORK_QUEUES}


def test_k8s_autoscales_the_gateway_on_cpu_and_the_workers_on_their_queues(
    k8s: list[dict[str, Any]],
) -> None:
    deployments = _by_kind(k8s, "Deployment")
    hpas, scaled = _by_kind(k8s, "HorizontalPodAutoscaler"), _by_kind(k8s, "ScaledObject")
    assert set(WORKER_DEPLOYMENTS) <= set(deployments)
    assert "api-gateway" in hpas
    for hpa in hpas.values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # KEDA makes its own HPA for a ScaledObject: one of ours on the same Deployment would fight it.
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()}
    keda_targets = {o["spec"]["scaleTargetRef"]["name"] for o in scaled.values()}
    assert not hpa_targets & keda_targets
    assert keda_targets == set(WORKER_DEPLOYMENTS)
    auths = _by_kind(k8s, "TriggerAuthentication")
    secrets = _by_kind(k8s, "Secret")
    for obj in scaled.values():
        spec = obj["spec"]
        channel = WORKER_DEPLOYMENTS[spec["scaleTargetRef"]["name"]]
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        (queue_trigger,) = [t for t in spec["triggers"] if t["type"] == "rabbitmq"]
        assert queue_trigger["metadata"]["queueName"] == WORK_QUEUES[channel]
        assert queue_trigger["metadata"]["mode"] == "QueueLength"
        assert int(queue_trigger["metadata"]["value"]) > 0
        auth = auths[queue_trigger["authenticationRef"]["name"]]
        (host,) = [r for r in auth["spec"]["secretTargetRef"] if r["parameter"] == "host"]
        assert host["key"] == "RABBITMQ_URL" and host["key"] in secrets[host["name"]]["stringData"]


def test_k8s_every_deployment_has_a_disruption_budget(k8s: list[dict[str, Any]]) -> None:
    budgets = _by_kind(k8s, "PodDisruptionBudget").values()
    for name, deployment in _by_kind(k8s, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [
            b
            for b in budgets
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
            and b["spec"]["selector"]["matchLabels"]
        ]
        assert len(matching) == 1, name
        (budget,) = matching
        # Allows a node drain with the replicas the Deployment has (never minAvailable = all).
        assert (
            budget["spec"].get("maxUnavailable", 0) >= 1
            or budget["spec"]["minAvailable"] < (deployment["spec"]["replicas"])
        ), name


def test_k8s_pods_spread_over_zones_and_nodes(k8s: list[dict[str, Any]]) -> None:
    for name, deployment in _by_kind(k8s, "Deployment").items():
        pod = deployment["spec"]["template"]
        constraints = pod["spec"]["topologySpreadConstraints"]
        keys = {c["topologyKey"] for c in constraints}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name
        for constraint in constraints:
            selector = constraint["labelSelector"]["matchLabels"]
            assert selector.items() <= pod["metadata"]["labels"].items(), name


def _pre_stop_seconds(container: dict[str, Any]) -> float:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    return float(command[1])


def test_k8s_grace_periods_cover_the_pre_stop_pause_and_the_worker_drain(
    k8s: list[dict[str, Any]],
) -> None:
    config = _by_kind(k8s, "ConfigMap")["notifications-config"]["data"]
    drain = float(config["WORKER_SHUTDOWN_SECONDS"])
    assert drain > 0
    for name, deployment in _by_kind(k8s, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        pause = _pre_stop_seconds(container)
        assert pause > 0, name
        grace = pod["terminationGracePeriodSeconds"]
        # Kubernetes counts the preStop hook inside the grace period, then sends SIGTERM.
        assert grace > pause + drain, name
        if name in WORKER_DEPLOYMENTS:
            assert grace >= pause + drain + 10, f"{name}: no margin to close connections"


def test_k8s_runs_a_three_node_rabbitmq_cluster_behind_the_services_url(
    k8s: list[dict[str, Any]],
) -> None:
    (cluster,) = [d for d in k8s if d["kind"] == "RabbitmqCluster"]
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    assert cluster["spec"]["replicas"] == 3
    url = urlparse(_by_kind(k8s, "Secret")["notifications-secrets"]["stringData"]["RABBITMQ_URL"])
    assert url.hostname == cluster["metadata"]["name"]  # the operator's client Service
    assert (
        "cluster_partition_handling = pause_minority"
        in (cluster["spec"]["rabbitmq"]["additionalConfig"])
    )


def test_k8s_config_and_secrets_hold_only_settings(k8s: list[dict[str, Any]]) -> None:
    configmaps, secrets = _by_kind(k8s, "ConfigMap"), _by_kind(k8s, "Secret")
    config = configmaps["notifications-config"]["data"]
    secret = secrets["notifications-secrets"]["stringData"]
    assert not (set(config) | set(secret)) - SETTING_NAMES
    assert not set(config) & set(secret)
    assert {"DATABASE_URL", "RABBITMQ_URL", "INTERNAL_API_KEY"} <= set(secret)
    assert not {name for name in set(config) | set(secret) if name.startswith("DEMO_")}
    for deployment in _by_kind(k8s, "Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        for source in container["envFrom"]:
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps
            else:
                assert source["secretRef"]["name"] in secrets


def test_k8s_mounts_the_signing_key_into_the_user_service_only(
    k8s: list[dict[str, Any]],
) -> None:
    secret = _by_kind(k8s, "Secret")["user-service-signing-key"]["stringData"]
    assert set(secret) == {"private-key.pem", "previous-public-keys.pem"}
    mounted = {}
    for name, deployment in _by_kind(k8s, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        volumes = {
            v["name"]
            for v in pod.get("volumes", [])
            if v.get("secret", {}).get("secretName") == "user-service-signing-key"
        }
        if volumes:
            (container,) = pod["containers"]
            mount = next(m for m in container["volumeMounts"] if m["name"] in volumes)
            env = {e["name"]: e.get("value") for e in container["env"]}
            mounted[name] = (mount["mountPath"], env.get("JWT_PRIVATE_KEY_FILE"))
    assert set(mounted) == {"user-service"}
    path, key_file = mounted["user-service"]
    assert key_file == f"{path}/private-key.pem"


# --- Prometheus -------------------------------------------------------------------------------


def _defined_metrics() -> set[str]:
    pattern = re.compile(r"(?:Counter|Histogram|Gauge|Summary)\(\s*\"(notifications?_\w+)\"")
    names: set[str] = set()
    for folder in ("shared", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(pattern.findall(path.read_text()))
    return names


def test_alert_rules_use_only_defined_metrics() -> None:
    rules = _yaml(ROOT / "deploy" / "prometheus" / "alerts.yml")
    defined = _defined_metrics()
    assert {"notifications_http_requests_total", "notifications_messages_consumed_total"} <= defined
    seen = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["expr"] and rule["labels"]["severity"], rule
            assert rule["annotations"]["summary"], rule
            for used in re.findall(r"\bnotifications?_\w+", rule["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", used)
                assert base in defined or used in defined, f"{rule['alert']}: unknown {used}"
                seen += 1
    assert seen


# --- RabbitMQ ---------------------------------------------------------------------------------


def test_rabbit_definitions_name_the_topology() -> None:
    definitions = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())
    exchanges = {e["name"]: e["type"] for e in definitions["exchanges"]}
    assert exchanges == {WORK_EXCHANGE: "direct", DEAD_LETTER_EXCHANGE: "fanout"}
    expected = {FAILED_QUEUE, *WORK_QUEUES.values()} | {
        delay_queue_name(channel, ms)
        for channel in WORK_QUEUES
        for ms in DEFAULTS.retry_delay_levels_ms
    }
    assert {q["name"] for q in definitions["queues"]} == expected
    for policy in definitions["policies"]:
        matched = {q for q in expected if re.search(policy["pattern"], q)}
        assert matched and not matched & set(WORK_QUEUES.values()), policy["name"]


# --- CI workflows -----------------------------------------------------------------------------


def _workflow(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = _yaml(ROOT / ".github" / "workflows" / name)
    loaded["on"] = loaded.pop(True, loaded.get("on"))  # YAML 1.1 reads a bare `on` as true
    return loaded


def test_ci_lints_tests_against_real_services_and_builds_every_image() -> None:
    lint = _workflow("lint.yml")
    steps = " ".join(str(s.get("run", "")) for s in lint["jobs"]["lint"]["steps"])
    assert "make lint" in steps

    tests = _workflow("tests.yml")["jobs"]["test"]
    assert set(tests["services"]) == {"postgres", "redis", "rabbitmq"}
    ports = {p for s in tests["services"].values() for p in s["ports"]}
    assert ports == {"5432:5432", "6379:6379", "5672:5672"}
    assert any(s.get("run") == "make test" for s in tests["steps"])

    images = _workflow("images.yml")
    assert images["on"]["push"]["branches"] == ["main"]
    matrix = images["jobs"]["build"]["strategy"]["matrix"]["service"]
    assert sorted(matrix) == sorted(v[0] for v in APP_SERVICES.values())


# --- Grafana and the Prometheus scrape configuration ------------------------------------------

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "notifications.json"


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_uses_only_defined_metrics_and_the_provisioned_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    datasource = _yaml(
        ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    )
    uid = datasource["datasources"][0]["uid"]
    defined = _defined_metrics()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == uid, panel["title"]
            for used in re.findall(r"\bnotifications_\w+", target["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", used)
                assert base in defined or used in defined, f"{panel['title']}: unknown {used}"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in (
        "accepted",
        "delivered",
        "latency",
        "reason",
        "queue",
        "retry",
        "breaker",
        "provider",
        "cpu",
        "memory",
    ):
        assert topic in titles, topic


def test_prometheus_scrapes_every_service_and_grafana_is_provisioned(
    compose: dict[str, Any],
) -> None:
    config = _yaml(ROOT / "deploy" / "prometheus" / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "notifications"]
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    components = {group["labels"]["component"] for group in job["static_configs"]}
    for name, (service, port_field, _) in APP_SERVICES.items():
        assert f"{name}:{getattr(DEFAULTS, port_field)}" in targets, name
        assert service in components
    services = compose["services"]
    prometheus_mounts = " ".join(services["prometheus"]["volumes"])
    assert "./deploy/prometheus:/etc/prometheus" in prometheus_mounts
    grafana_mounts = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana_mounts
    provider = _yaml(
        ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "notifications.yml"
    )
    path = provider["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in grafana_mounts
    source = _yaml(ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


def test_compose_sends_every_service_s_traces_to_jaeger(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in APP_SERVICES:
        endpoint = services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        url = urlparse(endpoint.removeprefix("${OTEL_EXPORTER_OTLP_ENDPOINT-").rstrip("}"))
        assert url.hostname == "jaeger" and url.port == 4318, name
    jaeger = services["jaeger"]
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert {(4318, 4318), (16686, 16686)} <= _published(jaeger)
