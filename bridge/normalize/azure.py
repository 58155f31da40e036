"""Azure Machine Learning events in the Event Grid schema (and the Azure side of CloudEvents input)."""

from __future__ import annotations

from typing import Any

from bridge.envelope import PLATFORM_AZUREML, CloudEvent
from bridge.normalize.errors import NormalizeError
from bridge.normalize.fields import require_id, require_str, require_time
from bridge.normalize.mapping import UNKNOWN, AzureSpec, azure_spec, map_status
from bridge.normalize.sequence import compute_sequence, payload_sequencer


def azure_status(spec: AzureSpec, data: object) -> str | None:
    """The canonical status of an Azure event: fixed by its type, or mapped from ``data.runStatus``."""
    if spec.status is not None:
        return spec.status
    if spec.status_field is None:
        return None
    value = data.get(spec.status_field) if type(data) is dict else None
    if value is None:
        return UNKNOWN if spec.status_required else None
    return map_status(value)


def from_eventgrid(ev: dict[str, Any]) -> CloudEvent:
    """One Event Grid schema event (``topic``, ``subject``, ``eventType``, ``eventTime``, ``id``, ``data``).

    A missing or empty ``subject`` falls back to the ``topic`` (the workspace), so the event still has a
    partition key. ``topic`` itself is required: it is the canonical ``source``.
    """
    event_id = require_id(ev)
    event_type = require_str(ev, "eventType")
    time = require_time(ev, "eventTime")
    topic = ev.get("topic")
    if type(topic) is not str or not topic:
        if topic is None or topic == "":
            raise NormalizeError("missing required field 'topic'")
        raise NormalizeError("invalid field 'topic': expected a string")
    subject = ev.get("subject")
    if type(subject) is not str or not subject:
        subject = topic
    data = ev.get("data")
    spec = azure_spec(event_type)
    status = azure_status(spec, data)
    return CloudEvent(
        id=event_id,
        source=topic,
        type=spec.type,
        subject=subject,
        time=time,
        data=data,
        platform=PLATFORM_AZUREML,
        origtype=event_type,
        sequence=compute_sequence(time, status, explicit=payload_sequencer(data)),
        status=status,
        original=ev,
    )
