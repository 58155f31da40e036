"""Message level: parse the body, recognise each event's shape, collect events and per-element errors.

Shapes, tried in this order on each JSON object: CloudEvents structured (``specversion``), Event Grid
(``eventType``), EventBridge (``detail-type``), SNS notification (``Type: Notification`` with a JSON
``Message`` holding one event object; the unwrapped event is the ``original``), and finally an object with
``type`` but no ``specversion``: a CloudEvent without its version, an error saying so. A JSON array gives
one event per element; a bad element gives a ``NormalizeError`` with its 0-based ``index`` and does not stop
the others. Kafka binary mode (a ``ce_specversion`` header) bypasses body-shape detection.
"""

from __future__ import annotations

from typing import Any, Final

from bridge import jsonutil
from bridge.envelope import CloudEvent
from bridge.model import RawMessage
from bridge.normalize.azure import from_eventgrid
from bridge.normalize.cloudevents import from_binary, from_structured
from bridge.normalize.errors import NormalizeError
from bridge.normalize.fields import json_kind
from bridge.normalize.sagemaker import from_eventbridge

Result = tuple[list[CloudEvent], list[NormalizeError]]

MAX_DATA_DEPTH: Final = jsonutil.MAX_DEPTH - 8
"""The deepest ``data`` an event may have: the canonical event nests it one level further (a structured record or
a dead letter's envelope a little more), and JSON parsers stop at 1024 levels (orjson; the bridge's own replay,
redrive and state tools): an input just within that limit would come out as records nobody can parse."""


def _may_nest_deeply(body: bytes) -> bool:
    """Whether a body could nest beyond ``MAX_DATA_DEPTH``: each level takes two bytes, so a body of usual size
    cannot (nothing counted); a longer one needs as many brackets (two C-speed counts). The nesting itself is
    walked only for the rare bodies that pass both."""
    return len(body) > 2 * MAX_DATA_DEPTH and body.count(b"[") + body.count(b"{") > MAX_DATA_DEPTH


def _within_depth(event: CloudEvent) -> CloudEvent:
    depth = jsonutil.nesting(event.data)
    if depth > MAX_DATA_DEPTH:
        raise NormalizeError(
            f"data nested {depth} levels deep: more than {MAX_DATA_DEPTH} (the canonical event adds levels, and "
            f"JSON parsers stop at {jsonutil.MAX_DEPTH})"
        )
    return event


def _from_sns(obj: dict[str, Any]) -> CloudEvent:
    message = obj["Message"]
    if type(message) is not str:
        raise NormalizeError(f"unsupported shape: SNS Message is a JSON {json_kind(message)}, not a string")
    try:
        inner = jsonutil.loads(message)
    except jsonutil.JSONDecodeError as exc:
        raise NormalizeError(
            f"malformed JSON in SNS Message: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if type(inner) is not dict:
        raise NormalizeError(f"unsupported shape: SNS Message holds a JSON {json_kind(inner)}, not an object")
    if inner.get("Type") == "Notification" and "Message" in inner:
        raise NormalizeError("unsupported shape: SNS notification nested in an SNS notification")
    return from_object(inner)


def from_object(obj: dict[str, Any]) -> CloudEvent:
    """One event object of any supported shape; raises ``NormalizeError`` when it cannot be normalized."""
    if "specversion" in obj:
        return from_structured(obj)
    if "eventType" in obj:
        return from_eventgrid(obj)
    if "detail-type" in obj:
        return from_eventbridge(obj)
    sns_type = obj.get("Type")
    if sns_type is not None and "Message" in obj:
        if sns_type == "Notification":
            return _from_sns(obj)
        raise NormalizeError(f"unsupported shape: SNS {sns_type} message is not a Notification")
    if "type" in obj:
        return from_structured(obj)
    raise NormalizeError("unrecognised event shape: object has none of eventType/type/detail-type")


def normalize_all(msg: RawMessage) -> Result:
    """Every event of a message and every error: good elements of an array flow, bad ones are reported.

    Errors of array elements carry ``index`` and ``element``; a whole-message error (malformed JSON, not an
    object or array, an empty array, a bad single object) has ``index=None``.
    """
    headers = msg.headers
    deep = _may_nest_deeply(msg.body)
    if headers and "ce_specversion" in headers:
        try:
            event = from_binary(headers, msg.body)
            return [_within_depth(event) if deep else event], []
        except NormalizeError as exc:
            return [], [exc]
    try:
        doc = jsonutil.loads(msg.body)
    except jsonutil.JSONDecodeError as bad:  # not ``exc``: compiled (mypyc), a name keeps its first type
        return [], [NormalizeError(f"malformed JSON: {_json_error(bad, msg.body)}")]
    if type(doc) is dict:
        try:
            event = from_object(doc)
            return [_within_depth(event) if deep else event], []
        except NormalizeError as exc:
            return [], [exc]
    if type(doc) is list:
        if not doc:
            return [], [NormalizeError("unsupported shape: empty JSON array")]
        events: list[CloudEvent] = []
        errors: list[NormalizeError] = []
        for index, element in enumerate(doc):
            if type(element) is not dict:
                errors.append(
                    NormalizeError(
                        f"unsupported shape: JSON array element {index} is not an object",
                        index=index,
                        element=element,
                    )
                )
                continue
            try:
                event = from_object(element)
                events.append(_within_depth(event) if deep else event)
            except NormalizeError as exc:
                errors.append(exc.at(index, element))
        return events, errors
    return [], [NormalizeError(f"unsupported shape: JSON {json_kind(doc)} is not an object or array")]


def _json_error(exc: jsonutil.JSONDecodeError, body: bytes) -> str:
    """Where and why a body is not JSON: an empty or blank body said so, invalid UTF-8 at its first bad byte (the
    parser reports those at the start), else the parser's own message and position."""
    if not body.strip():
        return "empty message body" if not body else "message body is whitespace only"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = body.count(b"\n", 0, bad.start) + 1
        column = len(body[body.rfind(b"\n", 0, bad.start) + 1 : bad.start].decode("utf-8", "replace")) + 1
        return f"invalid UTF-8 (byte 0x{body[bad.start]:02x}) at line {line} column {column} (byte {bad.start})"
    return f"{exc.msg} at line {exc.lineno} column {exc.colno}"


def normalize(msg: RawMessage) -> list[CloudEvent]:
    """Every event of a message; raises the first ``NormalizeError`` if any event fails."""
    events, errors = normalize_all(msg)
    if errors:
        raise errors[0]
    return events
