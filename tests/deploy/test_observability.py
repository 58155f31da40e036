"""Offline checks of the Grafana dashboard, the alert rules, their Kubernetes resources, the compose services and
the runbooks (deploy/observability, deploy/k8s/monitoring, docs/operations.md); no Prometheus needed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.testing.metrics import every_metric
from testbed.prometheus import dashboard_targets, declared_sample_names, metric_names, substitute
from tests.deploy.test_compose import _bind_mounts

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
DASHBOARD = OBS / "grafana" / "ml-event-bridge.json"
ALERTS = OBS / "alerts.yml"
MONITORING = ROOT / "deploy" / "k8s" / "monitoring"
OPERATIONS = ROOT / "docs" / "operations.md"
JOB = "ml-event-bridge"
# Names that Prometheus itself attaches to every target, allowed beside what the bridge exports.
PROMETHEUS_SERIES = {"up"}
# What Grafana puts in place of its variables, enough to parse the queries.
GRAFANA_VARS = {"__rate_interval": "1m", "__range": "1h", "__interval": "15s", "namespace": ".*", "pod": ".*"}

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def dashboard() -> Doc:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def rules() -> list[Doc]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every sample name the bridge's /metrics can carry (labelled metrics included before their first use)."""
    return declared_sample_names(every_metric().registry)


def _panels(dashboard: Doc) -> list[Doc]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _queries(dashboard: Doc) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel, target in dashboard_targets(dashboard)]


def _slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^a-z0-9_ -]", "", heading.strip().lower()).replace(" ", "-")


def test_dashboard_layout_ids_and_datasource(dashboard: Doc) -> None:
    """Panels have unique ids, non-overlapping places on the 24-column grid, and query the data source variable."""
    assert dashboard["uid"] == "ml-event-bridge" and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
    for panel in _panels(dashboard):
        assert panel["targets"], panel["title"]
        assert panel["description"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for ds in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert ds == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_dashboard_variables_select_namespace_and_pod(dashboard: Doc) -> None:
    """The namespace and pod variables come from the bridge's own series, and every query filters on both."""
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    provisioned = yaml.safe_load((OBS / "grafana" / "datasource.yml").read_text())["datasources"][0]
    assert variables["datasource"]["current"]["value"] == provisioned["uid"]
    for name in ("namespace", "pod"):
        var = variables[name]
        assert var["type"] == "query" and var["includeAll"] and var["multi"], name
        assert "allValue" not in var, f"{name}: All must expand to the bridge's own values, not .*"
        assert re.fullmatch(rf"label_values\(bridge_\w+(\{{.*\}})?, {name}\)", var["query"]), var["query"]
    assert '$namespace' in variables["pod"]["query"]
    for title, expr in _queries(dashboard):
        for selector in re.finditer(r"\b([a-z_:]+)\{([^}]*)\}", expr):
            assert 'namespace=~"$namespace"' in selector.group(2), f"{title}: {selector.group(0)}"
            assert 'pod=~"$pod"' in selector.group(2), f"{title}: {selector.group(0)}"
        assert not re.search(r"\b(bridge|process)_\w+(?!\w|\{)", expr.replace("_bucket{", "{")), (
            f"{title}: a selector without the namespace/pod filter: {expr}"
        )


def test_dashboard_queries_name_only_exported_metrics(dashboard: Doc, exported: set[str]) -> None:
    """Every metric a dashboard query names is one the bridge exports (with its _total/_bucket suffix)."""
    named: set[str] = set()
    for title, expr in _queries(dashboard):
        names = metric_names(substitute(expr, GRAFANA_VARS))
        assert names, f"{title}: no metric in {expr}"
        unknown = names - exported - PROMETHEUS_SERIES
        assert not unknown, f"{title}: {sorted(unknown)} not exported by the bridge"
        named |= names
    for variable in json.loads(DASHBOARD.read_text())["templating"]["list"][1:]:
        query = re.sub(r"label_values\((.*), \w+\)", r"\1", variable["query"])
        assert metric_names(substitute(query, GRAFANA_VARS)) <= exported


def test_metric_name_parser_sees_through_promql_syntax() -> None:
    """The PromQL name extraction skips functions, keywords, label names, strings, ranges and numbers."""
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{x="rate(b)"}[5m]))) * 1e3 '
        "> on (job) group_left (pod) max without (partition) (c offset 5m) unless d and bool e"
    )
    assert metric_names(expr) == {"a_bucket", "c", "d", "e"}
    assert metric_names("changes(process_start_time_seconds[1h]) >= 3") == {"process_start_time_seconds"}


def test_dashboard_covers_what_operators_need(dashboard: Doc) -> None:
    """Flow, dedup, unrouted, dead letters by kind, untrusted, late, lag per partition, buffers, held bytes against
    the memory budget, memory against the limit, latency quantiles, readiness, stall and restarts have panels."""
    exprs = [substitute(e, GRAFANA_VARS) for _, e in _queries(dashboard)]
    quantile = r"histogram_quantile\(0\.99, sum by \(le\) \(rate\("
    text = "\n".join(exprs)
    needed = {
        "events in per source": r"sum by \(source\) \(rate\(bridge_events_in_total",
        "events out per route": r"sum by \(route\) \(rate\(bridge_events_out_total",
        "duplicates": r"bridge_duplicates_dropped_total",
        "unrouted": r"bridge_events_unrouted_total",
        "dead letters by kind": r"sum by \(kind\) \(rate\(bridge_deadlettered_total",
        "late events": r"bridge_late_events_total",
        "lag per source and partition": r"by \(source, partition\) \(bridge_consumer_lag",
        "reorder buffer": r"bridge_reorder_buffer_events",
        "publish latency quantiles": quantile + r"bridge_publish_latency_seconds_bucket",
        "end-to-end latency quantiles": quantile + r"bridge_event_latency_seconds_bucket",
        "readiness per source": r"by \(pod, source\) \(bridge_source_up",
        "restarts": r"changes\(process_start_time_seconds",
        "memory": r"process_resident_memory_bytes",
        "untrusted events per source": r"sum by \(source\) \(rate\(bridge_untrusted_total",
        "readiness per pod": r"by \(pod\) \(bridge_ready",
        "brokers reachable": r"by \(pod, client\) \(bridge_broker_up",
        "stall": r"bridge_pipeline_stalled",
        "dedup store failures": r"bridge_dedup_store_errors_total",
        "held bytes per stage": r"by \(pod, stage\) \(bridge_held_bytes",
        "memory budget": r"bridge_memory_budget_bytes",
        "memory limit": r"bridge_memory_limit_bytes",
        "source pauses": r"bridge_source_pauses_total",
    }
    for what, pattern in needed.items():
        assert re.search(pattern, text), f"no panel for {what}"


def test_every_alert_has_severity_summary_and_a_runbook(rules: list[Doc]) -> None:
    """Each alert has a severity, a summary, a description and a runbook_url whose section exists in operations.md
    with what it means, what to check and what to do."""
    docs = OPERATIONS.read_text()
    sections = {_slug(m.group(1)): m for m in re.finditer(r"^### (.+)$", docs, re.M)}
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], rule["alert"]
        path, _, anchor = ann["runbook_url"].partition("#")
        assert path == "docs/operations.md" and (ROOT / path).is_file(), rule["alert"]
        assert anchor == rule["alert"].lower() and anchor in sections, f"no runbook section #{anchor}"
        start = sections[anchor].end()
        nxt = re.search(r"^##", docs[start:], re.M)
        body = docs[start: start + nxt.start()] if nxt else docs[start:]
        for part in ("**What it means**", "**What to check**", "**What to do**"):
            assert part in body, f"{rule['alert']} runbook lacks {part}"


def test_alerts_cover_the_failure_modes(rules: list[Doc], exported: set[str]) -> None:
    """Stall (the bridge's own stall gauge), lag growth, dead-letter rate, publish errors, source down, not ready,
    untrusted events, unchecked (dedup bypassed) events and memory near the budget and the limit are alerted on;
    every alert names only exported metrics."""
    by_name = {r["alert"]: r for r in rules}
    expected = {
        "BridgePipelineStalled", "BridgeConsumerLagGrowing", "BridgeDeadLetterRateHigh", "BridgePublishErrors",
        "BridgeSourceDown", "BridgeDown", "BridgeRestarting", "BridgeDeadLettersLost", "BridgeAckErrors",
        "BridgeUntrustedEvents", "BridgeNotReady", "BridgeDedupBypassed", "BridgeMemoryNearBudget",
        "BridgeMemoryNearLimit",
    }
    assert expected <= set(by_name), sorted(expected - set(by_name))
    for rule in rules:
        unknown = metric_names(rule["expr"]) - exported - PROMETHEUS_SERIES
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} not exported by the bridge"
        for selector in re.findall(r"\b(up|process_\w+)(\{[^}]*\})?", rule["expr"]):
            assert f'job="{JOB}"' in selector[1], f"{rule['alert']}: {selector[0]} must select job={JOB}"


def test_prometheusrule_is_generated_from_the_rules_file() -> None:
    """deploy/k8s/monitoring/prometheusrule.yaml holds exactly the groups of alerts.yml (the one source)."""
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "render-prometheusrule.py"), "--check"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stderr


def test_servicemonitor_scrapes_the_bridge_service() -> None:
    """The ServiceMonitor selects the Service by its labels, on its metrics port and /metrics; the Service name is
    the job name the rules select on."""
    monitor = yaml.safe_load((MONITORING / "servicemonitor.yaml").read_text())
    service = yaml.safe_load((ROOT / "deploy" / "k8s" / "service.yaml").read_text())
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "ServiceMonitor"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "jobLabel" not in monitor["spec"], "the job must stay the Service name"
    assert service["metadata"]["name"] == JOB
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_monitoring_component_renders_beside_the_base(tmp_path: Path) -> None:
    """An overlay of deploy/k8s plus the deploy/k8s/monitoring component renders the base and the two Prometheus
    Operator resources; the default kustomization stays free of them (clusters without the CRDs)."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with built-in kustomize) is required for this test"
    component = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    assert sorted(component["resources"]) == ["prometheusrule.yaml", "servicemonitor.yaml"]
    base = yaml.safe_load((ROOT / "deploy" / "k8s" / "kustomization.yaml").read_text())
    assert not any("monitoring" in r for r in base["resources"])
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(ROOT / "deploy" / "k8s", overlay)],
        "components": [os.path.relpath(MONITORING, overlay)],
    }))
    out = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(out) if d)
    assert kinds == sorted(["ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                            "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule"])


def test_compose_runs_prometheus_and_grafana_on_these_files() -> None:
    """docker-compose.yml runs pinned Prometheus and Grafana images wired to deploy/observability: Prometheus
    loads alerts.yml where prometheus.yml names it and scrapes the bridge's service and port; Grafana provisions
    the data source (Prometheus' service and port) and the dashboard from the directory its provider reads."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    prom, grafana = services["prometheus"], services["grafana"]
    assert re.fullmatch(r"prom/prometheus:v2\.\d+\.\d+", prom["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"])
    prom_mounts = dict(_bind_mounts(prom))
    config_path = prom_mounts["./deploy/observability/prometheus.yml"]
    assert f"--config.file={config_path}" in prom["command"]
    config = yaml.safe_load((OBS / "prometheus.yml").read_text())
    assert config["rule_files"] == [prom_mounts["./deploy/observability/alerts.yml"]]
    [job] = config["scrape_configs"]
    assert job["job_name"] == JOB and job.get("metrics_path", "/metrics") == "/metrics"
    [static] = job["static_configs"]
    host, port = static["targets"][0].split(":")
    bridge_config = yaml.safe_load((ROOT / "config" / "compose.yaml").read_text())
    assert host in services and host == "bridge" and int(port) == int(bridge_config["http"]["port"])
    assert {"namespace", "pod"} <= set(static["labels"])
    mounts = dict(_bind_mounts(grafana))
    datasource = yaml.safe_load((OBS / "grafana" / "datasource.yml").read_text())["datasources"][0]
    assert mounts["./deploy/observability/grafana/datasource.yml"].startswith("/etc/grafana/provisioning/datasources/")
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    assert "9090:9090" in prom["ports"]
    provider = yaml.safe_load((OBS / "grafana" / "dashboards.yml").read_text())["providers"][0]
    assert mounts["./deploy/observability/grafana/dashboards.yml"].startswith("/etc/grafana/provisioning/dashboards/")
    dash_target = mounts["./deploy/observability/grafana/ml-event-bridge.json"]
    assert Path(dash_target).parent == Path(provider["options"]["path"])
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == dash_target
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy" and prom["healthcheck"]
