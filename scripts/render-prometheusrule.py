#!/usr/bin/env python3
"""Write deploy/k8s/monitoring/prometheusrule.yaml from deploy/observability/alerts.yml (the one source of the
alert rules). Usage: python3 scripts/render-prometheusrule.py [--check]   (--check: exit 1 if the file is stale)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "deploy" / "observability" / "alerts.yml"
TARGET = ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml"
HEADER = """\
# GENERATED from deploy/observability/alerts.yml by scripts/render-prometheusrule.py: edit that file, then re-run
# the script. The same alert rules for the Prometheus Operator; runbooks in docs/operations.md.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the PromQL expressions) as literal blocks, as in the source file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def render() -> str:
    groups = yaml.safe_load(SOURCE.read_text())["groups"]
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "ml-event-bridge",
            "labels": {
                "app.kubernetes.io/name": "ml-event-bridge",
                "app.kubernetes.io/component": "bridge",
                "app.kubernetes.io/part-of": "ml-event-bridge",
            },
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.is_file() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python3 scripts/render-prometheusrule.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
