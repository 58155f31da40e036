"""The canonical envelope: one frozen CloudEvents 1.0 type for every event that leaves the normalizer.

See docs/design.md, "Canonical envelope". ``to_dict`` gives the CloudEvents JSON format; ``original`` keeps the
raw input event (for filters that target the original shape) and is never serialized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from bridge import jsonutil

SPECVERSION: Final = "1.0"
JSON: Final = "application/json"

PLATFORM_AZUREML: Final = "azureml"
PLATFORM_SAGEMAKER: Final = "sagemaker"

# Canonical types (docs/design.md, "Canonical envelope").
JOB_STATUS_CHANGED: Final = "ml.job.status_changed"
JOB_COMPLETED: Final = "ml.job.completed"
MODEL_REGISTERED: Final = "ml.model.registered"
ENDPOINT_STATUS_CHANGED: Final = "ml.endpoint.status_changed"
DATA_DRIFT_DETECTED: Final = "ml.data.drift_detected"
RESOURCE_STATUS_CHANGED: Final = "ml.resource.status_changed"

STATUSES: Final = frozenset(
    {"pending", "running", "stopping", "completed", "failed", "stopped", "deleting", "deleted", "unknown"}
)
TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "stopped", "deleted"})
_KNOWN: Final = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "data", "platform", "origtype", "sequence", "status",
     "datacontenttype", "late", "partitionkey"}
)


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """A canonical ML lifecycle event. Immutable; use ``evolve`` to derive a changed copy."""

    id: str
    source: str
    type: str
    subject: str
    time: str
    data: Any
    platform: str
    origtype: str
    sequence: str
    status: str | None = None
    datacontenttype: str = JSON
    late: bool = False
    extensions: Mapping[str, Any] = field(default_factory=dict)
    original: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def partitionkey(self) -> str:
        return self.subject

    @property
    def dedup_key(self) -> tuple[str, str]:
        return (self.source, self.id)

    def evolve(self, **changes: Any) -> CloudEvent:
        return replace(self, **changes)

    def attributes(self) -> dict[str, Any]:
        """Every CloudEvents context attribute (extensions included), without ``data``."""
        attrs: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": self.time,
            "datacontenttype": self.datacontenttype,
            "platform": self.platform,
            "origtype": self.origtype,
        }
        if self.status is not None:
            attrs["status"] = self.status
        attrs["sequence"] = self.sequence
        attrs["partitionkey"] = self.subject
        if self.late:
            attrs["late"] = True
        for key, value in self.extensions.items():
            attrs.setdefault(key, value)
        return attrs

    def to_dict(self) -> dict[str, Any]:
        """The CloudEvents 1.0 JSON format of this event."""
        attrs = self.attributes()
        attrs["data"] = self.data
        return attrs

    def to_json(self) -> bytes:
        return jsonutil.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> CloudEvent:
        """The event of a canonical CloudEvents JSON dict (as ``to_dict`` or a decoded record gives it);
        attributes it does not know become extensions. Raises ``KeyError`` if a required one is missing."""
        late = doc.get("late", False)
        return cls(
            id=str(doc["id"]),
            source=str(doc["source"]),
            type=str(doc["type"]),
            subject=str(doc.get("subject", "")),
            time=str(doc.get("time", "")),
            data=doc.get("data"),
            platform=str(doc.get("platform", "")),
            origtype=str(doc.get("origtype", "")),
            sequence=str(doc.get("sequence", "")),
            status=doc.get("status"),
            datacontenttype=str(doc.get("datacontenttype", JSON)),
            late=late is True or late == "true",
            extensions={k: v for k, v in doc.items() if k not in _KNOWN},
        )
