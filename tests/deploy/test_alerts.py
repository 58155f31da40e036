"""promtool on the shipped files: the rules and the compose Prometheus config check, and the rules' unit tests
(tests/deploy/alerts_test.yml) pass and cover every alert both firing and silent."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
ALERTS = OBS / "alerts.yml"
UNIT_TESTS = Path(__file__).resolve().parent / "alerts_test.yml"


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, check=False)


def _alert_names() -> list[str]:
    groups: list[dict[str, Any]] = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_promtool_checks_the_rules_file_and_the_prometheusrule(promtool: str, tmp_path: Path) -> None:
    """`promtool check rules` accepts alerts.yml and the PrometheusRule's rule groups, counting every alert."""
    spec = yaml.safe_load((ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml").read_text())["spec"]
    operator_rules = tmp_path / "prometheusrule-groups.yml"
    operator_rules.write_text(yaml.safe_dump(spec))
    n = len(_alert_names())
    for path in (ALERTS, operator_rules):
        result = _promtool(promtool, "check", "rules", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {n} rules found" in result.stdout + result.stderr


def test_promtool_checks_the_compose_prometheus_config(promtool: str, tmp_path: Path) -> None:
    """`promtool check config` accepts the compose prometheus.yml with its rule file where the container mounts it."""
    config = yaml.safe_load((OBS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text())
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = _promtool(promtool, "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid prometheus config file syntax" in result.stdout + result.stderr


def test_promtool_unit_tests_pass_and_cover_every_alert_firing_and_silent(promtool: str) -> None:
    """`promtool test rules` passes, and for every alert some case expects it firing and some case expects silence."""
    result = _promtool(promtool, "test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    spec = yaml.safe_load(UNIT_TESTS.read_text())
    assert (UNIT_TESTS.parent / spec["rule_files"][0]).resolve() == ALERTS.resolve()
    fires: set[str] = set()
    silent: set[str] = set()
    for group in spec["tests"]:
        for case in group.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    names = set(_alert_names())
    assert names <= fires, f"never expected to fire: {sorted(names - fires)}"
    assert names <= silent, f"never expected to stay silent: {sorted(names - silent)}"


def test_promtool_unit_tests_fail_on_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    """The unit tests are not vacuous: the stall alert reading the stall gauge the wrong way round fails them."""
    broken = ALERTS.read_text().replace("bridge_pipeline_stalled == 1", "bridge_pipeline_stalled == 0")
    assert broken != ALERTS.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    spec = yaml.safe_load(UNIT_TESTS.read_text())
    spec["rule_files"] = [str(tmp_path / "alerts.yml")]
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = _promtool(promtool, "test", "rules", str(tmp_path / "alerts_test.yml"))
    assert result.returncode != 0
    assert "BridgePipelineStalled" in result.stdout + result.stderr
