"""Deployment configuration, checked without a Docker engine or a cluster:

- docker-compose.yml against the Compose specification's JSON schema, and its wiring
  (every role present, healthchecks, depends_on on health, restart policies);
- deploy/k8s/*.yaml against the Kubernetes v1.33 strict schemas (additionalProperties: false),
  and what the issue asks of them (readiness on /readyz, resources, PDBs, an HPA, a Job);
- deploy/prometheus/alerts.yml and the Grafana dashboard: they parse, and every metric they
  use is one the code exports (or Prometheus's own `up`);
- the Dockerfile: multi-stage, non-root, dependencies from requirements.lock with hashes.

The schemas are vendored in deploy/schemas/ (no network at test time); see the README.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml
from prometheus_client import REGISTRY

import services
from services.infra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def _load_schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "schemas" / name).read_text())
    return loaded


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _errors(validator: Any, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.instance_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


# ---------------------------------------------------------------- compose


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    validator = jsonschema_rs.validator_for(_load_schema("compose-spec.json"))
    assert _errors(validator, _compose()) == []


def test_compose_validation_catches_mistakes() -> None:
    """The validator is not a rubber stamp: a misspelt key and a bad condition fail."""
    validator = jsonschema_rs.validator_for(_load_schema("compose-spec.json"))
    broken = _compose()
    broken["services"]["sweeper"]["restart_policy"] = "always"
    broken["services"]["poller"]["depends_on"]["postgres"]["condition"] = "healthy"
    assert len(_errors(validator, broken)) >= 2


def test_compose_runs_the_whole_service_with_health_and_restarts() -> None:
    services_ = _compose()["services"]
    for name in (
        "nats-1", "nats-2", "nats-3", "postgres", "valkey", "migrate", "api-1", "api-2",
        "replicator", "sweeper", "poller", "prometheus", "grafana",
    ):  # fmt: skip
        assert name in services_, name
    assert services_["replicator"]["deploy"]["replicas"] == 2
    assert services_["migrate"]["restart"] == "no"
    for name, service in services_.items():
        if name == "migrate":
            continue
        assert service.get("restart") == "unless-stopped", name
        assert "healthcheck" in service, name
        for dependency, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services_[dependency], (name, dependency)
    for role in ("api-1", "api-2", "replicator", "sweeper", "poller"):
        depends = services_[role]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        for server in ("nats-1", "nats-2", "nats-3", "postgres", "valkey"):
            assert depends[server] == {"condition": "service_healthy"}, (role, server)
        env = services_[role]["environment"]
        assert len(env["COPYTRADE_NATS_URL"].split(",")) == 3
        assert env["COPYTRADE_NATS_REPLICAS"] == "3"
    for service in services_.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


# ---------------------------------------------------------------- kubernetes


def _kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for resource in _kustomization()["resources"]:
        for document in yaml.safe_load_all((K8S / resource).read_text()):
            if document:
                documents.append((resource, document))
    return documents


def test_kustomization_lists_existing_files_and_the_nats_chart() -> None:
    kustomization = _kustomization()
    assert kustomization["kind"] == "Kustomization"
    known = {"apiVersion", "kind", "namespace", "labels", "resources", "helmCharts", "images"}
    assert set(kustomization) <= known
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    [chart] = kustomization["helmCharts"]
    assert chart["name"] == "nats" and "nats-io" in chart["repo"]
    values = yaml.safe_load((K8S / chart["valuesFile"]).read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["fileStore"]["enabled"] is True


def test_kubernetes_manifests_are_valid_against_the_strict_schemas() -> None:
    bundle = _load_schema("kubernetes-v1.33-strict.json")
    failures = {}
    for resource, document in _k8s_documents():
        kind = f"{document['apiVersion']}/{document['kind']}"
        assert kind in bundle["kinds"], f"{resource}: no vendored schema for {kind}"
        schema = {**bundle["kinds"][kind], "$defs": bundle["$defs"]}
        errors = _errors(jsonschema_rs.validator_for(schema), document)
        if errors:
            failures[f"{resource}:{document['metadata']['name']}"] = errors
    assert failures == {}


def test_kubernetes_validation_catches_mistakes() -> None:
    bundle = _load_schema("kubernetes-v1.33-strict.json")
    schema = {**bundle["kinds"]["apps/v1/Deployment"], "$defs": bundle["$defs"]}
    [deployment] = [d for r, d in _k8s_documents() if d["kind"] == "Deployment"][:1]
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    broken["spec"]["replicas"] = "two"
    assert len(_errors(jsonschema_rs.validator_for(schema), broken)) >= 2


def test_kubernetes_roles_probes_budgets_and_autoscaling() -> None:
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for _, document in _k8s_documents():
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
    deployments = by_kind["Deployment"]
    assert set(deployments) == {
        "copytrade-api", "copytrade-replicator", "copytrade-sweeper", "copytrade-poller",
    }  # fmt: skip
    for name, deployment in deployments.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["resources"]["requests"] and container["resources"]["limits"], name
        assert container["securityContext"]["runAsNonRoot"] is True, name
    for name in ("copytrade-api", "copytrade-replicator"):
        assert by_kind["PodDisruptionBudget"][name]["spec"]["selector"]["matchLabels"] == (
            deployments[name]["spec"]["selector"]["matchLabels"]
        )
    [hpa] = by_kind["HorizontalPodAutoscaler"].values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "copytrade-replicator"
    [job] = by_kind["Job"].values()
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "services.infra.db.migrate"
    ]
    secret = by_kind["Secret"]["copytrade"]
    assert {"COPYTRADE_JWT_SECRET", "COPYTRADE_CREDENTIAL_KEYS"} <= set(secret["stringData"])


def test_configured_variables_are_settings_the_code_reads() -> None:
    known = {f"COPYTRADE_{name.upper()}" for name in Settings.model_fields}
    known |= {"COPYTRADE_LOG_FORMAT", "COPYTRADE_LOG_LEVEL", "COPYTRADE_SIM_HOST"}
    used: set[str] = set()
    for _, document in _k8s_documents():
        for key in ("data", "stringData"):
            used |= set(document.get(key, {}))
    for service in _compose()["services"].values():
        used |= {k for k in service.get("environment", {}) if k.startswith("COPYTRADE_")}
    assert used - known == set()


# ---------------------------------------------------------------- metrics, alerts, dashboard


def exported_metrics() -> set[str]:
    """Every sample name the code can export (imports every services module first)."""
    for module in pkgutil.walk_packages(services.__path__, "services."):
        # Not the dev tooling, and not entry modules (asgi builds an app and sets up logging).
        if not module.name.startswith("services.dev") and not module.name.endswith(
            (".asgi", ".__main__")
        ):
            importlib.import_module(module.name)
    names = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("copytrade_"):
            continue
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",),
        }[family.type]
        names |= {family.name + suffix for suffix in suffixes}
    return names


_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, strings, groupings removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()
        if following.startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_metric_name_extraction() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, broker) (rate(a_bucket{outcome!="ok"}[5m]))) > 0'
    ) == {"a_bucket"}
    assert metric_names('up{job=~"copytrade-.*"} == 0 and on (x) b') == {"up", "b"}


def _alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_alert_rules_parse_and_use_only_exported_metrics() -> None:
    exported = exported_metrics() | {"up"}
    rules = _alert_rules()
    assert {rule["alert"] for rule in rules} == {
        "CopytradeLegsFailed", "CopytradeLegsInDoubt", "CopytradeConsumerLag",
        "CopytradeDeadLettered", "CopytradeBrokerCircuitOpen", "CopytradeProcessDown",
    }  # fmt: skip
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        used = metric_names(str(rule["expr"]))
        assert used, rule["alert"]
        assert used <= exported, (rule["alert"], used - exported)


def test_prometheus_configs_load_the_rules_and_scrape_every_role() -> None:
    for name in ("prometheus.yml", "local.yml"):
        config = yaml.safe_load((DEPLOY / "prometheus" / name).read_text())
        assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
        jobs = {job["job_name"] for job in config["scrape_configs"]}
        assert jobs == {
            "copytrade-api", "copytrade-replicator", "copytrade-sweeper", "copytrade-poller",
        }  # fmt: skip


def test_grafana_dashboard_panels_use_only_exported_metrics() -> None:
    exported = exported_metrics()
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "copytrade.json").read_text())
    titles = " | ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for wanted in (
        "orders / s", "fan-out", "legs", "broker latency", "broker errors", "rate-budget",
        "consumer lag", "sweeper backlog", "websocket",
    ):  # fmt: skip
        assert wanted in titles, wanted
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used = metric_names(target["expr"])
            assert used and used <= exported, (panel["title"], used - exported)


# ---------------------------------------------------------------- image


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_non_root_and_installs_from_the_lock() -> None:
    stages = _stages()
    assert len(stages) >= 2
    build, final = "\n".join(stages[0]), stages[-1]
    assert "--require-hashes" in build and "requirements.lock" in build
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    final_text = "\n".join(final)
    for tool in ("gcc", "build-essential", "apt-get install", "pip install", "make "):
        assert tool not in final_text, tool
    assert re.search(r'^ENTRYPOINT \["python", "-m"\]', final_text, re.M)


def test_lock_file_pins_every_dependency_with_a_hash() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock = (ROOT / "requirements.lock").read_text().replace("\\\n", " ")
    locked: dict[str, str] = {}
    for line in lock.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        requirement, _, hashes = line.partition(" ")
        name, _, version = requirement.partition("==")
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", hashes), line
        locked[_normalized(name)] = version
    for dependency in pyproject["project"]["dependencies"]:
        name, _, version = dependency.partition("==")
        name = _normalized(re.sub(r"\[.*\]", "", name))
        assert locked.get(name) == version, (name, version, locked.get(name))


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("role", ["services.api", "services.worker.replicator",
                                  "services.worker.sweeper", "services.worker.poller",
                                  "services.infra.db.migrate", "brokers.sim"])  # fmt: skip
def test_every_role_the_image_runs_is_a_module(role: str) -> None:
    """`python -m <role>` runs something: a package's __main__, or a module's main guard."""
    spec = importlib.util.find_spec(role)
    assert spec is not None and spec.origin is not None
    if spec.submodule_search_locations:
        assert importlib.util.find_spec(f"{role}.__main__") is not None
    else:
        assert 'if __name__ == "__main__":' in Path(spec.origin).read_text()
