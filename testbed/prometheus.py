"""A real Prometheus server (Debian's ``prometheus`` package) for the observability tests, and PromQL helpers.

``Prometheus`` starts ``prometheus`` on a free loopback port with a config and storage directory of its own
(never the packaged service's port 9090 or /var/lib/prometheus) and answers HTTP API queries. The helpers
pull metric names out of PromQL, list the sample names a ``/metrics`` page or a registry exports, substitute
Grafana's dashboard variables, and compress the durations of a rules file for tests that cannot wait minutes.
Install the binaries with ``scripts/install-prometheus.sh`` (CI does it in ``make install``).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import yaml
from prometheus_client import CollectorRegistry

from testbed.servers import ManagedProcess, ServerError

INSTALL_HINT = "install Debian's prometheus package: bash scripts/install-prometheus.sh"


def binary(name: str) -> str:
    """Path of ``prometheus`` or ``promtool``; ServerError with the install command when missing."""
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
    if found is None:
        raise ServerError(f"{name} not found; {INSTALL_HINT}")
    return found


class Prometheus(ManagedProcess):
    """``prometheus`` with ``config`` (a dict written to the log directory) and a private TSDB directory."""

    name: ClassVar[str] = "prometheus"

    def __init__(self, config: dict[str, Any], *, log_dir: str | Path | None = None,
                 startup_timeout: float = 60.0) -> None:
        super().__init__(log_dir=log_dir, startup_timeout=startup_timeout)
        self.binary = binary("prometheus")
        self.config_path = self.log_dir / "prometheus.yml"
        self.storage = self.log_dir / "tsdb"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.storage}",
            f"--web.listen-address={self.host}:{self.port}",
            "--storage.tsdb.retention.time=1d",
        ]

    def after_start(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:  # the port opens before the TSDB and the rules are loaded
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise ServerError(f"prometheus never became ready: {exc}\n{self.log_tail()}") from exc
            time.sleep(0.2)

    def api(self, path: str, **params: str | list[str]) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; RuntimeError on an API error."""
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query at now: the result vector (``[{"metric": {...}, "value": [ts, "v"]}, ...]``)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def label_values(self, label: str, match: str) -> list[str]:
        return list(self.api(f"label/{label}/values", **{"match[]": match}))

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) with their labels and ``state``."""
        return list(self.api("alerts")["alerts"])

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule with its ``health`` (ok, err, unknown), ``lastError`` and, for alerts, ``state``."""
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)


# -- PromQL --------------------------------------------------------------------------------------------

_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "inf", "nan", "atan2",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects (functions, keywords and label names left out)."""
    if "$" in expr:
        raise ValueError(f"substitute the dashboard variables first: {expr}")
    s = _STRING.sub('""', expr)
    s = re.sub(r"#[^\n]*", " ", s)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = _GROUPING.sub(" ", s)
    s = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", s)
    names: set[str] = set()
    for m in _IDENT.finditer(s):
        token = m.group(0)
        before = s[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":  # the exponent of a number such as 1e3
            continue
        if s[m.end():].lstrip().startswith("("):  # a function or an aggregation
            continue
        if token.lower() in _KEYWORDS:
            continue
        names.add(token)
    return names


def exported_sample_names(metrics_text: str) -> set[str]:
    """Sample names on a Prometheus text-format page (``foo_total``, ``foo_bucket``, ...): what Prometheus stores."""
    names = set()
    for line in metrics_text.splitlines():
        if line and not line.startswith("#"):
            m = _IDENT.match(line)
            if m:
                names.add(m.group(0))
    return names


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def declared_sample_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name a registry can export, including labelled metrics that have no child yet."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(s.name for s in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


# -- Grafana dashboards ----------------------------------------------------------------------------------


def dashboard_targets(dashboard: dict[str, Any]) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of every panel, rows' nested panels included."""
    for panel in dashboard.get("panels", []):
        for sub in [panel, *panel.get("panels", [])]:
            for target in sub.get("targets", []):
                yield sub, target


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace ``$name`` and ``${name}`` (longest names first) as Grafana does before sending a query."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    return expr


# -- rules ----------------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+)([smhdwy])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _seconds(text: str) -> float:
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return float(sum(int(n) * _SECONDS[u] for n, u in parts))


def compress_durations(rules: dict[str, Any], factor: float, minimum: float = 1.0) -> dict[str, Any]:
    """The same rules with every ``for`` and every range selector ``[d]`` divided by ``factor`` (whole seconds,
    at least ``minimum``): a 5-minute alert logic replayed in seconds. Expressions are otherwise unchanged."""

    def scale(text: str) -> str:
        return f"{max(minimum, round(_seconds(text) / factor)):.0f}s"

    out: dict[str, Any] = json.loads(json.dumps(rules))
    for group in out["groups"]:
        for rule in group["rules"]:
            rule["expr"] = re.sub(r"\[([0-9smhdwy]+)\]", lambda m: f"[{scale(m.group(1))}]", rule["expr"])
            if "for" in rule:
                rule["for"] = scale(rule["for"])
    return out
