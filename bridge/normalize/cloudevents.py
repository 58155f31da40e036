"""CloudEvents 1.0 input: structured JSON (one object or a batch element) and Kafka binary mode.

Attributes other than the CloudEvents core ones and the ones the bridge sets itself go to ``extensions``.
An input whose ``type`` is already canonical and which carries ``platform`` (the bridge's own output fed
back in) keeps its ``platform``, ``origtype``, ``status`` and ``sequence``: normalizing is idempotent.
Otherwise the type is mapped with the Azure ML table (CloudEvents is Azure's second delivery schema); the
platform is ``sagemaker`` when ``source`` starts with ``aws.``, else ``azureml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from bridge.envelope import (
    DATA_DRIFT_DETECTED,
    ENDPOINT_STATUS_CHANGED,
    JOB_COMPLETED,
    JOB_STATUS_CHANGED,
    JSON,
    MODEL_REGISTERED,
    PLATFORM_AZUREML,
    PLATFORM_SAGEMAKER,
    RESOURCE_STATUS_CHANGED,
    STATUSES,
    CloudEvent,
)
from bridge.normalize.azure import azure_status
from bridge.normalize.errors import NormalizeError
from bridge.normalize.fields import require_id, require_str, require_time
from bridge.normalize.mapping import azure_spec
from bridge.normalize.sequence import compute_sequence, payload_sequencer

CORE_ATTRIBUTES: Final = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"}
)
BRIDGE_ATTRIBUTES: Final = frozenset({"platform", "origtype", "status", "sequence", "partitionkey", "late"})
_NOT_EXTENSIONS: Final = CORE_ATTRIBUTES | BRIDGE_ATTRIBUTES
CANONICAL_TYPES: Final = frozenset(
    {JOB_STATUS_CHANGED, JOB_COMPLETED, MODEL_REGISTERED, ENDPOINT_STATUS_CHANGED, DATA_DRIFT_DETECTED,
     RESOURCE_STATUS_CHANGED}
)
_PLATFORMS: Final = frozenset({PLATFORM_AZUREML, PLATFORM_SAGEMAKER})


def from_attributes(attrs: dict[str, Any], data: Any, original: dict[str, Any]) -> CloudEvent:
    """A canonical event from CloudEvents attributes, the event data and the raw input event."""
    event_id = require_id(attrs)
    event_type = require_str(attrs, "type")
    source = require_str(attrs, "source")
    time = require_time(attrs, "time")
    subject = attrs.get("subject")
    if type(subject) is not str or not subject:
        subject = source
    extensions = {k: v for k, v in attrs.items() if k not in _NOT_EXTENSIONS}
    ctype = attrs.get("datacontenttype")
    platform = attrs.get("platform")
    status: str | None
    if event_type in CANONICAL_TYPES and platform in _PLATFORMS:
        origtype = attrs.get("origtype")
        if type(origtype) is not str or not origtype:
            origtype = event_type
        raw_status = attrs.get("status")
        status = raw_status if raw_status in STATUSES else None
        canonical_type = event_type
    else:
        spec = azure_spec(event_type)
        status = azure_status(spec, data)
        canonical_type = spec.type
        origtype = event_type
        platform = PLATFORM_SAGEMAKER if source.startswith("aws.") else PLATFORM_AZUREML
    explicit = attrs.get("sequence")
    if explicit is None:
        explicit = payload_sequencer(data)
    return CloudEvent(
        id=event_id,
        source=source,
        type=canonical_type,
        subject=subject,
        time=time,
        data=data,
        platform=str(platform),
        origtype=origtype,
        sequence=compute_sequence(time, status, explicit=explicit),
        status=status,
        datacontenttype=ctype if type(ctype) is str and ctype else JSON,
        extensions=extensions,
        original=original,
    )


def from_structured(ev: dict[str, Any]) -> CloudEvent:
    """One CloudEvents structured-mode JSON object."""
    return from_attributes(ev, ev.get("data"), ev)


def _header_text(name: str, value: bytes | str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise NormalizeError(f"header '{name}' is not valid UTF-8") from None


def from_binary(headers: Mapping[str, bytes], body: bytes) -> CloudEvent:
    """A CloudEvents Kafka binary-mode record: attributes in ``ce_*`` headers, the body is ``data``.

    The body is parsed as JSON when ``content-type`` is absent or a JSON type, otherwise kept as text.
    ``original`` is the structured-mode equivalent (attributes plus ``data``).
    """
    attrs: dict[str, Any] = {}
    content_type: str | None = None
    for name, value in headers.items():
        if name.startswith("ce_"):
            attrs[name[3:]] = _header_text(name, value)
        elif name == "content-type":
            content_type = _header_text(name, value)
    if content_type is not None:
        attrs["datacontenttype"] = content_type
    data: Any = None
    if body:
        if content_type is None or "json" in content_type.lower():
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise NormalizeError(
                    f"malformed JSON in binary-mode data: {exc.msg} at line {exc.lineno} column {exc.colno}"
                ) from None
        else:
            try:
                data = body.decode("utf-8")
            except UnicodeDecodeError:
                raise NormalizeError(
                    f"binary-mode data with content-type {content_type!r} is not UTF-8 text"
                ) from None
    original = dict(attrs)
    original["data"] = data
    return from_attributes(attrs, data, original)
