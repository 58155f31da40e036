"""Amazon EventBridge events (SageMaker and any other source) to canonical events.

- ``source``: ``aws.sagemaker/<region>/<account>`` (another EventBridge source ``S`` gives
  ``S/<region>/<account>``; ``region``/``account`` fall back to the first ARN's fields). A list-valued
  ``source`` (the corpus repeats the key as ``["aws.sagemaker"]``; orjson keeps the last) uses its first
  string. A missing ``source`` is taken as ``aws.sagemaker`` when the detail-type is a SageMaker one.
- ``subject``: the resource part of the first ARN in ``resources`` (everything after the 6th
  colon-separated field), else the type's ARN field in ``detail``, else ``<kind>/<name>`` from the type's
  name fields, else any ``detail`` key ending in ``Arn`` holding a SageMaker ARN, else ``<kind>`` alone.
- ``platform`` is ``sagemaker`` for every EventBridge event (the contract has two platforms; the true origin
  stays visible in ``source`` and ``origtype``).
"""

from __future__ import annotations

from typing import Any, Final

from bridge.envelope import PLATFORM_SAGEMAKER, RESOURCE_STATUS_CHANGED, CloudEvent
from bridge.normalize.errors import NormalizeError
from bridge.normalize.fields import first_str, require_id, require_str, require_time
from bridge.normalize.mapping import UNKNOWN, SageMakerSpec, map_status, sagemaker_spec, unknown_kind
from bridge.normalize.sequence import compute_sequence, payload_sequencer

SAGEMAKER_SOURCE: Final = "aws.sagemaker"
_EMPTY: Final[dict[str, Any]] = {}
_NOT_GENERIC_STATUS: Final = frozenset({"secondarystatus", "modelapprovalstatus"})


def split_arn(value: object) -> list[str] | None:
    """The six fields of an ARN (the last is the whole resource part), or ``None`` if not an ARN."""
    if type(value) is not str or not value.startswith("arn:"):
        return None
    parts = value.split(":", 5)
    if len(parts) != 6 or not parts[5]:
        return None
    return parts


def _first_arn(resources: object) -> list[str] | None:
    if type(resources) is list:
        for item in resources:
            parts = split_arn(item)
            if parts is not None:
                return parts
    return None


def _generic_arn(detail: dict[str, Any]) -> list[str] | None:
    for key, value in detail.items():
        if key.endswith("Arn") and type(value) is str and ":sagemaker:" in value:
            parts = split_arn(value)
            if parts is not None:
                return parts
    return None


def _subject(arn: list[str] | None, spec: SageMakerSpec | None, kind: str, detail: dict[str, Any]) -> str:
    if arn is not None:
        return arn[5]
    if spec is not None:
        if spec.arn_field is not None:
            parts = split_arn(detail.get(spec.arn_field))
            if parts is not None:
                return parts[5]
        for fields in spec.names:
            values = [detail.get(f) for f in fields]
            if all(v is not None and v != "" for v in values):
                return kind + "/" + "/".join(str(v) for v in values)
    parts = _generic_arn(detail)
    if parts is not None:
        return parts[5]
    return kind


def _generic_status(detail: dict[str, Any]) -> str | None:
    for key, value in detail.items():
        low = key.lower()
        if (
            low.endswith("status")
            and type(value) is str
            and low not in _NOT_GENERIC_STATUS
            and not low.startswith("previous")
        ):
            return map_status(value)
    return None


def _status(spec: SageMakerSpec | None, detail: dict[str, Any]) -> str | None:
    if spec is None:
        return _generic_status(detail)
    if spec.status_field is None:
        return None
    value = detail.get(spec.status_field)
    return UNKNOWN if value is None else map_status(value)


def from_eventbridge(ev: dict[str, Any]) -> CloudEvent:
    """One EventBridge event (``version``, ``id``, ``detail-type``, ``source``, ``account``, ``time``,
    ``region``, ``resources``, ``detail``)."""
    event_id = require_id(ev)
    detail_type = require_str(ev, "detail-type")
    time = require_time(ev, "time")
    spec = sagemaker_spec(detail_type)
    source = first_str(ev.get("source"))
    if source is None:
        if "source" in ev and ev["source"] not in (None, "", []):
            raise NormalizeError("invalid field 'source': expected a string or a list of strings")
        if spec is None and not detail_type.startswith(("SageMaker", "Amazon SageMaker")):
            raise NormalizeError("missing required field 'source'")
        source = SAGEMAKER_SOURCE
    raw_detail = ev.get("detail")
    detail = raw_detail if type(raw_detail) is dict else _EMPTY
    arn = _first_arn(ev.get("resources"))
    region = first_str(ev.get("region")) or (arn[3] if arn is not None and arn[3] else None)
    if region is None:
        raise NormalizeError("missing required field 'region'")
    account = first_str(ev.get("account")) or (arn[4] if arn is not None and arn[4] else None)
    if account is None:
        raise NormalizeError("missing required field 'account'")
    if spec is not None:
        canonical_type, kind = spec.type, spec.kind
    else:
        canonical_type, kind = RESOURCE_STATUS_CHANGED, unknown_kind(detail_type)
    status = _status(spec, detail)
    return CloudEvent(
        id=event_id,
        source=source + "/" + region + "/" + account,
        type=canonical_type,
        subject=_subject(arn, spec, kind, detail),
        time=time,
        data=raw_detail,
        platform=PLATFORM_SAGEMAKER,
        origtype=detail_type,
        sequence=compute_sequence(
            time, status, explicit=payload_sequencer(detail), refine=detail.get("LastModifiedTime")
        ),
        status=status,
        original=ev,
    )
