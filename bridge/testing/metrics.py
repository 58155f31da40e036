"""Every metric the bridge can export: each component's ``MetricGroup`` declared in one registry (tests of the
dashboards, alerts and docs against what ``/metrics`` can carry)."""

from __future__ import annotations

import importlib
import pkgutil

import bridge
from bridge.metrics import MetricGroup, Metrics


def every_metric() -> Metrics:
    """A registry holding the metrics of every component (every module of ``bridge`` is imported, so a group is
    found wherever its component lives)."""
    for module in pkgutil.walk_packages(bridge.__path__, "bridge."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    metrics = Metrics()
    for group in MetricGroup.groups:
        group(metrics)
    return metrics
