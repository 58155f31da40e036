"""Generate docs/configuration.md from the config models, so the reference always matches the code.

``python -m bridge.config_docs > docs/configuration.md``; a test fails when the file is stale.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bridge.azure_auth import AzureCredentialConfig
from bridge.config import (
    BridgeConfig,
    DeadLetterConfig,
    DedupConfig,
    FilterConfig,
    HttpConfig,
    LogConfig,
    ReadinessConfig,
    ReorderConfig,
    RouteConfig,
    ShutdownConfig,
)
from bridge.kafka_oauth import SaslOAuthConfig
from bridge.limits import LimitsConfig
from bridge.pipeline.trust import TrustConfig, TrustLists
from bridge.sinks.kafka import KafkaSinkConfig
from bridge.sources.eventhubs import CheckpointStoreConfig, EventHubsSourceConfig
from bridge.sources.kafka import KafkaSourceConfig
from bridge.sources.sqs import SqsSourceConfig
from bridge.state.config import StateConfig

SECTIONS: list[tuple[str, type[BaseModel], str]] = [
    ("http", HttpConfig, "HTTP server for /healthz, /readyz, /metrics."),
    ("log", LogConfig, "Logging."),
    ("sources[] (type: kafka)", KafkaSourceConfig, "Kafka consumer group; also Event Hubs' Kafka endpoint, MSK."),
    ("sources[].sasl_oauth, sink.sasl_oauth (type: kafka)", SaslOAuthConfig, "OAUTHBEARER tokens without "
     "keys: Entra ID for Event Hubs' Kafka endpoint, IAM for Amazon MSK; refreshed before they expire."),
    ("sources[] (type: sqs)", SqsSourceConfig, "SQS queue fed by EventBridge rules (raw or SNS-wrapped bodies)."),
    ("sources[] (type: eventhubs)", EventHubsSourceConfig, "Azure Event Hubs with blob checkpoints: a "
     "connection string, or `fully_qualified_namespace` with an Entra ID `credential` (no keys)."),
    ("sources[].checkpoint_store (type: eventhubs)", CheckpointStoreConfig, "Blob container of checkpoints and "
     "partition ownership: `connection_string`, or `account_url` with the source's `credential`."),
    ("sources[].credential (type: eventhubs)", AzureCredentialConfig, "Entra ID credential (azure-identity)."),
    ("dedup", DedupConfig, "Duplicate suppression by (source, id)."),
    ("reorder", ReorderConfig, "Per-subject reorder buffer."),
    ("routes[]", RouteConfig, "Named routes: filters (AND'd) and a destination topic."),
    ("routes[].filters[]", FilterConfig, "One filter: EventBridge pattern or Event Grid filter."),
    ("deadletter", DeadLetterConfig, "Dead-letter destination (a Kafka topic on the sink)."),
    ("trust", TrustConfig, "Source trust: allow-lists of Azure ML workspaces, AWS accounts/regions and event "
     "sources. No list: every event is accepted. Outside them: dead-lettered as `untrusted source: ...`."),
    ("trust.sources.<name>", TrustLists, "Allow-lists of one source (by `sources[].name`), applied in addition "
     "to the global ones."),
    ("sink", KafkaSinkConfig, "Kafka producer for routed events and dead letters."),
    ("shutdown", ShutdownConfig, "Graceful shutdown."),
    ("readiness", ReadinessConfig, "What makes /readyz answer 503 besides disconnected brokers: a stalled "
     "pipeline, a Kafka cluster that does not answer its probe (docs/operations.md)."),
    ("limits", LimitsConfig, "The memory budget: one limit bounds everything the bridge holds (see "
     "docs/operations.md, \"Memory\")."),
    ("state", StateConfig, "ML lifecycle state: the log-compacted current-state topic (`bridge state` reads it) and "
     "how long last states are remembered for `changes_only` routes (README, \"ML lifecycle state\")."),
]


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


def render() -> str:
    out = ["# Configuration reference", "",
           "Generated from the config models by `python -m bridge.config_docs` (a test keeps it current).",
           "One YAML file; `${VAR}` and `${VAR:-default}` in string values are read from the environment.",
           "Unknown keys are errors. Validate with `bridge check-config FILE`.", ""]
    top = BridgeConfig.model_fields
    out += ["## Top level", "", "| key | default |", "|---|---|"]
    for name, field in top.items():
        out.append(f"| `{name}` | {_default(field)} |")
    out.append("")
    for title, model, blurb in SECTIONS:
        out += [f"## `{title}`", "", blurb, "", "| key | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            desc = (field.description or "").replace("|", "\\|")
            out.append(f"| `{name}` | `{_type(field)}` | {_default(field)} | {desc} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render())
