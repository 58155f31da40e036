"""Every rejection gives a NormalizeError with a precise reason (and never an unknown-type error)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bridge.model import RawMessage
from bridge.normalize import NormalizeError, normalize, normalize_all
from tests.normalize.corpus_util import corpus_lines

EG: dict[str, Any] = orjson.loads(corpus_lines("azureml_eventgrid")[4])
CE: dict[str, Any] = orjson.loads(corpus_lines("azureml_cloudevents")[4])
EB: dict[str, Any] = orjson.loads(corpus_lines("sagemaker")[0])


def _without(ev: dict[str, Any], *keys: str) -> bytes:
    return orjson.dumps({k: v for k, v in ev.items() if k not in keys})


def _with(ev: dict[str, Any], **changes: Any) -> bytes:
    return orjson.dumps({**ev, **changes})


CASES: list[tuple[str, bytes, str]] = [
    ("truncated", b'{"id": ', "malformed JSON: unexpected end of data at line 1 column 8"),
    ("bad key", b"{x}", "malformed JSON: unexpected character, expected a string key at line 1 column 2"),
    ("empty body", b"", "malformed JSON: empty message body"),
    ("blank body", b" \t ", "malformed JSON: message body is whitespace only"),
    ("invalid utf-8 deep", b'{"id": "a",\n "data": "caf\xe9 x"}',
     "malformed JSON: invalid UTF-8 (byte 0xe9) at line 2 column 14 (byte 25)"),
    ("trailing", b'{"a":1} x', "malformed JSON: unexpected content after document at line 1 column 9"),
    ("string", b'"hello"', "unsupported shape: JSON string is not an object or array"),
    ("number", b"42", "unsupported shape: JSON number is not an object or array"),
    ("null", b"null", "unsupported shape: JSON null is not an object or array"),
    ("empty array", b"[]", "unsupported shape: empty JSON array"),
    (
        "unknown object",
        b'{"hello": "world"}',
        "unrecognised event shape: object has none of eventType/type/detail-type",
    ),
    ("eg no id", _without(EG, "id"), "missing required field 'id'"),
    ("eg empty id", _with(EG, id=""), "empty required field 'id'"),
    ("eg null id", _with(EG, id=None), "missing required field 'id'"),
    ("ce empty source", _with(CE, source=""), "empty required field 'source'"),
    ("eg id object", _with(EG, id={"a": 1}), "invalid field 'id': expected a string, got object"),
    ("eg no time", _without(EG, "eventTime"), "missing required field 'eventTime'"),
    ("eg bad time", _with(EG, eventTime="yesterday"), "invalid timestamp in field 'eventTime': 'yesterday'"),
    (
        "eg feb 30",
        _with(EG, eventTime="2019-02-30T00:00:00Z"),
        "invalid timestamp in field 'eventTime': '2019-02-30T00:00:00Z'",
    ),
    ("eg no topic", _without(EG, "topic"), "missing required field 'topic'"),
    ("eg type number", _with(EG, eventType=5), "invalid field 'eventType': expected a string, got number"),
    ("ce no id", _without(CE, "id"), "missing required field 'id'"),
    ("ce no source", _without(CE, "source"), "missing required field 'source'"),
    ("ce no time", _without(CE, "time"), "missing required field 'time'"),
    ("ce no type", _without(CE, "type"), "missing required field 'type'"),
    ("eb no id", _without(EB, "id"), "missing required field 'id'"),
    ("eb no time", _without(EB, "time"), "missing required field 'time'"),
    ("eb bad time", _with(EB, time=True), "invalid timestamp in field 'time': True"),
    (
        "eb no region",
        _with({k: v for k, v in EB.items() if k != "region"}, resources=[]),
        "missing required field 'region'",
    ),
    (
        "eb no account",
        _with({k: v for k, v in EB.items() if k != "account"}, resources=[]),
        "missing required field 'account'",
    ),
    (
        "eb foreign no source",
        _with({k: v for k, v in EB.items() if k != "source"}, **{"detail-type": "Thing"}),
        "missing required field 'source'",
    ),
    (
        "eb source object",
        _with(EB, source={"a": 1}),
        "invalid field 'source': expected a string or a list of strings",
    ),
    (
        "sns bad json",
        orjson.dumps({"Type": "Notification", "Message": "{nope"}),
        "malformed JSON in SNS Message: unexpected character, expected a string key at line 1 column 2",
    ),
    (
        "sns array",
        orjson.dumps({"Type": "Notification", "Message": "[1]"}),
        "unsupported shape: SNS Message holds a JSON array, not an object",
    ),
    (
        "sns not string",
        orjson.dumps({"Type": "Notification", "Message": {"a": 1}}),
        "unsupported shape: SNS Message is a JSON object, not a string",
    ),
    (
        "sns confirmation",
        orjson.dumps({"Type": "SubscriptionConfirmation", "Message": "confirm"}),
        "unsupported shape: SNS SubscriptionConfirmation message is not a Notification",
    ),
    (
        "sns in sns",
        orjson.dumps(
            {
                "Type": "Notification",
                "Message": orjson.dumps({"Type": "Notification", "Message": "{}"}).decode(),
            }
        ),
        "unsupported shape: SNS notification nested in an SNS notification",
    ),
    (
        "sns inner missing id",
        orjson.dumps({"Type": "Notification", "Message": _without(EB, "id").decode()}),
        "missing required field 'id'",
    ),
]


@pytest.mark.parametrize(("body", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_reason(body: bytes, reason: str) -> None:
    """Each malformed or incomplete message is rejected as a whole with exactly this reason."""
    with pytest.raises(NormalizeError) as info:
        normalize(RawMessage(body=body))
    assert info.value.reason == reason
    assert str(info.value) == reason
    assert info.value.index is None
    events, errors = normalize_all(RawMessage(body=body))
    assert events == []
    assert [e.reason for e in errors] == [reason]


BINARY = {
    "ce_specversion": b"1.0",
    "ce_id": b"1",
    "ce_type": b"T",
    "ce_source": b"/s",
    "ce_time": b"2024-01-01T00:00:00Z",
}
BINARY_CASES: list[tuple[str, dict[str, bytes], bytes, str]] = [
    (
        "bad json data",
        BINARY,
        b"{x",
        "malformed JSON in binary-mode data: unexpected character, expected a string key at line 1 column 2",
    ),
    ("no ce_id", {k: v for k, v in BINARY.items() if k != "ce_id"}, b"{}", "missing required field 'id'"),
    (
        "no ce_time",
        {k: v for k, v in BINARY.items() if k != "ce_time"},
        b"{}",
        "missing required field 'time'",
    ),
    ("bad header", {**BINARY, "ce_source": b"\xff"}, b"{}", "header 'ce_source' is not valid UTF-8"),
    (
        "bad text",
        {**BINARY, "content-type": b"text/plain"},
        b"\xff",
        "binary-mode data with content-type 'text/plain' is not UTF-8 text",
    ),
]


@pytest.mark.parametrize(
    ("headers", "body", "reason"), [c[1:] for c in BINARY_CASES], ids=[c[0] for c in BINARY_CASES]
)
def test_binary_mode_error_reason(headers: dict[str, bytes], body: bytes, reason: str) -> None:
    """Binary-mode records with bad headers or data are rejected with exactly this reason."""
    with pytest.raises(NormalizeError) as info:
        normalize(RawMessage(body=body, headers=headers))
    assert info.value.reason == reason


def test_unknown_types_never_raise() -> None:
    """Unknown event types of every shape normalize instead of raising."""
    bodies = [
        _with(EG, eventType="Never.Seen"),
        _with(CE, type="Never.Seen"),
        _with(EB, **{"detail-type": "Never Seen", "detail": {}}),
    ]
    for body in bodies:
        assert normalize(RawMessage(body=body))[0].type == "ml.resource.status_changed"


def test_long_bad_value_is_shortened_in_reason() -> None:
    """A long invalid timestamp is cut in the reason so dead-letter headers stay small."""
    with pytest.raises(NormalizeError) as info:
        normalize(RawMessage(body=_with(EG, eventTime="x" * 500)))
    assert info.value.reason == "invalid timestamp in field 'eventTime': '" + "x" * 56 + "..."
