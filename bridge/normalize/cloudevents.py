"""CloudEvents input: structured JSON (one object or a batch element) and Kafka binary mode.

``specversion`` 1.0 is read as is and 0.3 is converted to 1.0 (``schemaurl`` becomes ``dataschema``;
``datacontentencoding: base64`` data is decoded); any other value, or none, is a ``NormalizeError``.

Attributes other than the CloudEvents core ones and the ones the bridge sets itself go to ``extensions``.
An input whose ``type`` is already canonical and which carries ``platform`` (the bridge's own output fed
back in) keeps its ``platform``, ``origtype``, ``status`` and ``sequence``: normalizing is idempotent.
Otherwise the type is mapped with the Azure ML table (CloudEvents is Azure's second delivery schema); the
platform is ``sagemaker`` when ``source`` starts with ``aws.``, else ``azureml``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

from bridge import jsonutil
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
    SPECVERSION,
    STATUSES,
    CloudEvent,
)
from bridge.normalize.azure import azure_status
from bridge.normalize.errors import NormalizeError
from bridge.normalize.fields import json_kind, require_id, require_str, require_time, shown
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


def _v03_data(attrs: dict[str, Any], data: Any) -> Any:
    """The data of a CloudEvents 0.3 event whose ``datacontentencoding`` says how ``data`` is encoded."""
    encoding = attrs.pop("datacontentencoding")
    if type(encoding) is not str or encoding.lower() != "base64":
        raise NormalizeError(f"unsupported CloudEvents 0.3 datacontentencoding {shown(encoding)} (only base64)")
    if type(data) is not str:
        raise NormalizeError(f"CloudEvents 0.3 base64 data is a JSON {json_kind(data)}, not a string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise NormalizeError("CloudEvents 0.3 data is not valid base64") from None
    return _decode_data(raw, attrs.get("datacontenttype"), "CloudEvents 0.3 base64 data")


def _upgrade(attrs: dict[str, Any], data: Any, *, structured: bool = True) -> tuple[dict[str, Any], Any]:
    """CloudEvents 1.0 attributes and data of an event of any ``specversion`` the bridge reads.

    1.0 is taken as is; 0.3 is converted (the 1.0 spec's changes: ``schemaurl`` became ``dataschema``, and
    ``datacontentencoding: base64`` was replaced by binary data, decoded here); any other value, or none,
    is an error: its attributes may mean something else.
    """
    version = attrs.get("specversion")
    if version == SPECVERSION:
        return attrs, data
    if version == "0.3":
        attrs = dict(attrs)
        attrs["specversion"] = SPECVERSION
        if "schemaurl" in attrs:
            schema = attrs.pop("schemaurl")
            attrs.setdefault("dataschema", schema)
        if "datacontentencoding" in attrs:  # binary mode: the record value is the data itself
            data = _v03_data(attrs, data) if structured else data
            attrs.pop("datacontentencoding", None)
        return attrs, data
    if version is None:
        raise NormalizeError("missing required field 'specversion' (CloudEvents 1.0 or 0.3)")
    raise NormalizeError(
        f"unsupported CloudEvents specversion {shown(version)}: the bridge reads 1.0 and converts 0.3"
    )


def from_structured(ev: dict[str, Any]) -> CloudEvent:
    """One CloudEvents structured-mode JSON object (1.0, or 0.3 converted to 1.0)."""
    attrs, data = _upgrade(ev, ev.get("data"))
    return from_attributes(attrs, data, ev)


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
    data = _decode_data(body, content_type, "binary-mode data") if body else None
    original = dict(attrs)
    original["data"] = data
    attrs, data = _upgrade(attrs, data, structured=False)
    return from_attributes(attrs, data, original)


def _decode_data(body: bytes, content_type: object, what: str) -> Any:
    """Data bytes as JSON when the content type is absent or a JSON type, else as UTF-8 text."""
    if content_type is None or (type(content_type) is str and "json" in content_type.lower()):
        try:
            return jsonutil.loads(body)
        except jsonutil.JSONDecodeError as exc:
            where = f"line {exc.lineno} column {exc.colno}"
            raise NormalizeError(f"malformed JSON in {what}: {exc.msg} at {where}") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise NormalizeError(f"{what} with content-type {shown(content_type)} is not UTF-8 text") from None
