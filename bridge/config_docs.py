"""Generate docs/configuration.md from the config models, so the reference always matches the code.

``python -m bridge.config_docs > docs/configuration.md``; a test fails when the file is stale.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bridge.config import (
    BridgeConfig,
    DeadLetterConfig,
    DedupConfig,
    DeliveryConfig,
    FilterConfig,
    HttpConfig,
    LogConfig,
    ReadinessConfig,
    ReorderConfig,
    RouteConfig,
    ShutdownConfig,
)
from bridge.limits import LimitsConfig
from bridge.pipeline.trust import TrustConfig, TrustLists
from bridge.sinks import registry as sinks
from bridge.sources.registry import connectors
from bridge.state.config import StateConfig

Section = tuple[str, type[BaseModel], str]

_BEFORE_SOURCES: list[Section] = [
    ("http", HttpConfig, "HTTP server for /healthz, /readyz, /metrics."),
    ("log", LogConfig, "Logging."),
]
_BEFORE_SINK: list[Section] = [
    ("dedup", DedupConfig, "Duplicate suppression by (source, id)."),
    ("reorder", ReorderConfig, "Per-subject reorder buffer."),
    ("routes[]", RouteConfig, "Named routes: filters (AND'd) and a destination topic."),
    ("routes[].filters[]", FilterConfig, "One filter: a CloudEvents SQL expression (`cesql`), an EventBridge "
     "pattern or an Event Grid filter (docs/filters.md)."),
    ("deadletter", DeadLetterConfig, "Dead-letter destination (a Kafka topic on the sink)."),
    ("trust", TrustConfig, "Source trust: allow-lists of Azure ML workspaces, AWS accounts/regions and event "
     "sources. No list: every event is accepted. Outside them: dead-lettered as `untrusted source: ...`."),
    ("trust.sources.<name>", TrustLists, "Allow-lists of one source (by `sources[].name`), applied in addition "
     "to the global ones."),
]
_AFTER_SINK: list[Section] = [
    ("shutdown", ShutdownConfig, "Graceful shutdown."),
    ("readiness", ReadinessConfig, "What makes /readyz answer 503 besides disconnected brokers: a stalled "
     "pipeline, a Kafka cluster that does not answer its probe (docs/operations.md)."),
    ("limits", LimitsConfig, "The memory budget: one limit bounds everything the bridge holds (see "
     "docs/operations.md, \"Memory\")."),
    ("state", StateConfig, "ML lifecycle state: the log-compacted current-state topic (`bridge state` reads it) and "
     "how long last states are remembered for `changes_only` routes (README, \"ML lifecycle state\")."),
    ("delivery", DeliveryConfig, "The delivery guarantee: at least once (default), or exactly once from Kafka to "
     "Kafka through Kafka transactions (docs/design.md, \"Exactly once\")."),
]


def sections() -> list[Section]:
    """Every documented model in page order; the sources' and the sinks' sections come from their registries."""
    source_sections: list[Section] = []
    for c in connectors():
        source_sections.append((f"sources[] (type: {c.tag})", c.config, c.summary))
        source_sections.extend((f"sources[].{key} (type: {c.tag})", model, text) for key, model, text in c.docs)
    sink_sections: list[Section] = []
    for k in sinks.connectors():
        sink_sections.append((f"sink (type: {k.tag})", k.config, k.summary))
        sink_sections.extend((f"sink.{key} (type: {k.tag})", model, text) for key, model, text in k.docs)
    return [*_BEFORE_SOURCES, *source_sections, *_BEFORE_SINK, *sink_sections, *_AFTER_SINK]


def _type(field: FieldInfo) -> str:
    ann: Any = field.annotation
    text = getattr(ann, "__name__", None) if not getattr(ann, "__args__", None) else None
    return (text or str(ann)).replace("typing.", "").replace("pydantic.types.", "")


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        return "required" if field.default_factory is None else "(see below)"
    value = field.default
    if hasattr(value, "get_secret_value"):
        return "(secret)"
    return f"`{value!r}`" if value is not None else "none"


def _description(field: FieldInfo) -> str:
    return (field.description or "").replace("|", "\\|")


def render() -> str:
    out = ["# Configuration reference", "",
           "Generated from the config models by `python -m bridge.config_docs` (a test keeps it current).",
           "One YAML file; `${VAR}` and `${VAR:-default}` in string values are read from the environment.",
           "Unknown keys are errors. Validate with `bridge check-config FILE`.", ""]
    top = BridgeConfig.model_fields
    out += ["## Top level", "", "| key | default | description |", "|---|---|---|"]
    for name, field in top.items():
        out.append(f"| `{name}` | {_default(field)} | {_description(field)} |")
    out.append("")
    for title, model, blurb in sections():
        out += [f"## `{title}`", "", blurb, "", "| key | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            out.append(f"| `{name}` | `{_type(field)}` | {_default(field)} | {_description(field)} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render())
