"""What the fuzzers check, shared by the hypothesis tests and the atheris target.

``check_message(body, headers)`` runs one raw message through the normalizer, the filter dialects and every
encoding, and raises ``AssertionError`` (or the unexpected exception itself) when a property breaks:

- normalize returns events and ``NormalizeError``s with a non-empty reason, never anything else;
- every normalized event encodes: ``CloudEvent.to_json``, Kafka binary and structured records (the sink encoders
  of ``bridge.sinks.encoding``, as the pipeline holds and publishes them, and ``ce_headers``), its dead letter,
  the JSON Lines line, and the encoding reads back;
- every filter (the three dialects, every operator family) answers True or False on the canonical event, the
  original event and (for messages the normalizer refused) the raw parsed objects, never raises;
- ``check_cesql(text)``: any text is a CESQL parse error or an expression whose evaluation on the canonical example
  events gives a CESQL value and a known error kind, never another exception (the atheris target's mode ``q``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bridge import jsonutil
from bridge.filters import Filter, compile_filter
from bridge.filters.cesql import GENERIC, RUNTIME_KINDS, CesqlParseError, compile_expression
from bridge.model import DeadLetter, RawMessage
from bridge.normalize import NormalizeError, normalize_all
from bridge.sinks.encoding import BinaryEncoder, Held, StructuredEncoder, ce_headers, decode_record, encode_routed
from bridge.sinks.jsonl import record_line

ENCODERS: Final = (BinaryEncoder(64 * 1024), StructuredEncoder(64 * 1024))
JSONL_ENCODER: Final = StructuredEncoder(1 << 40)  # what JsonlSink encodes with

EVENTBRIDGE_PATTERNS: Final[list[dict[str, Any]]] = [
    {"type": [{"prefix": "ml."}], "status": ["failed", "completed"]},
    {"source": [{"anything-but": {"prefix": "aws."}}], "data": {"runStatus": [{"equals-ignore-case": "failed"}]}},
    {"detail": {"TrainingJobStatus": [{"anything-but": ["InProgress", "Stopping"]}]}},
    {"detail": {"LastModifiedTime": [{"numeric": [">", 0, "<=", 5e9]}]}},
    {"data": {"ModelVersion": [{"numeric": ["=", 20]}], "ModelTags": {"area": [{"exists": True}]}}},
    {"subject": [{"wildcard": "*job/*"}], "time": [{"suffix": "Z"}]},
    {"$or": [{"data": {"x": [{"cidr": "10.0.0.0/8"}]}}, {"detail": {"ip": [{"cidr": "2001:db8::/32"}]}}]},
    {"id": [{"exists": False}], "sequence": [{"anything-but": {"wildcard": "t:*"}}]},
    {"detail": {"ProductionVariants": {"DesiredWeight": [1, 1.0, {"numeric": ["<", 5]}]}}},
    {"platform": [{"prefix": {"equals-ignore-case": "SAGE"}}], "origtype": [{"anything-but": {"suffix": "x"}}]},
    {"data": [None, "", True, 0, {"anything-but": 5}]},
]

EVENTGRID_FILTERS: Final[list[dict[str, Any]]] = [
    {"includedEventTypes": ["ml.job.completed", "Microsoft.MachineLearningServices.RunCompleted"],
     "subjectBeginsWith": "experiments/", "subjectEndsWith": "_5"},
    {"isSubjectCaseSensitive": True, "subjectBeginsWith": "Models/"},
    {"advancedFilters": [
        {"operatorType": "NumberInRange", "key": "data.ModelVersion", "values": [[0, 100]]},
        {"operatorType": "NumberNotIn", "key": "data.x", "values": [1, 2.5]},
    ]},
    {"enableAdvancedFilteringOnArrays": True, "advancedFilters": [
        {"operatorType": "StringContains", "key": "data.ModelTags.area", "values": ["diab"]},
        {"operatorType": "StringNotBeginsWith", "key": "subject", "values": ["x"]},
        {"operatorType": "StringIn", "key": "data.runStatus", "values": ["Failed"]},
    ]},
    {"advancedFilters": [
        {"operatorType": "NumberGreaterThanOrEquals", "key": "detail.CreationTime", "value": 0},
        {"operatorType": "NumberLessThan", "key": "data.DriftCoefficient", "value": 1},
        {"operatorType": "BoolEquals", "key": "data.flag", "value": True},
    ]},
    {"advancedFilters": [
        {"operatorType": "IsNullOrUndefined", "key": "data.missing"},
        {"operatorType": "IsNotNull", "key": "id"},
        {"operatorType": "StringNotEndsWith", "key": "data.a.b.c.d.e", "values": ["z"]},
        {"operatorType": "NumberNotInRange", "key": "data.n", "values": [[-1, 1]]},
        {"operatorType": "StringNotIn", "key": "type", "values": ["a"]},
        {"operatorType": "StringNotContains", "key": "source", "values": ["b"]},
        {"operatorType": "StringEndsWith", "key": "time", "values": ["Z"]},
        {"operatorType": "StringBeginsWith", "key": "data.runId", "values": ["AutoML"]},
        {"operatorType": "NumberIn", "key": "data.ModelVersion", "values": [20]},
        {"operatorType": "NumberGreaterThan", "key": "data.v", "value": -1e300},
        {"operatorType": "NumberLessThanOrEquals", "key": "data.v", "value": 1e300},
    ]},
]

CESQL_FILTERS: Final[list[str]] = [
    "type = 'ml.job.status_changed' AND status = 'failed' AND platform IN ('azureml', 'sagemaker')",
    "subject LIKE 'training-job/%' OR NOT EXISTS late OR source NOT LIKE '%\\_x%'",
    "INT(sequence) > 0 XOR BOOL(late) OR LENGTH(CONCAT_WS('/', id, subject, time)) % 7 = -3",
    "SUBSTRING(origtype, -6, 3) IN ('Cha', partitionkey, 1) AND IS_INT(status) <> IS_BOOL(datacontenttype)",
    "ABS(LENGTH(TRIM(UPPER(LOWER(specversion))))) / (LENGTH(subject) - 3) < LEFT(RIGHT(id, 3), 1) + -1",
    "topic = data OR eventtype LIKE '%Registered' OR detail = STRING(region) OR account * 1 >= 0",
]

FILTERS: Final[list[Filter]] = [compile_filter(p, "eventbridge") for p in EVENTBRIDGE_PATTERNS] + [
    compile_filter(f, "eventgrid") for f in EVENTGRID_FILTERS
] + [compile_filter({"cesql": e}, "cesql") for e in CESQL_FILTERS]


def check_filters(event: Mapping[str, Any]) -> None:
    for f in FILTERS:
        result = f.matches(event)
        assert result is True or result is False, f"{f.dialect} filter answered {result!r}"


def check_cesql(text: str) -> None:
    """Parse ``text`` as CESQL; when it parses, evaluate it on a few events, the canonical ML ones included."""
    try:
        expression = compile_expression(text)
    except CesqlParseError:
        return
    for event in CESQL_EVENTS:
        value, kind = expression.evaluate(event)
        assert type(value) in (bool, int, str), f"{text!r} gave {value!r}"
        assert kind is None or (kind in RUNTIME_KINDS and kind != GENERIC), f"{text!r} gave error {kind}"


CESQL_EVENTS: Final[list[dict[str, Any]]] = [
    {"specversion": "1.0", "id": "1", "source": "aws.sagemaker/us-east-1/1", "type": "ml.job.status_changed",
     "subject": "training-job/k", "status": "failed", "platform": "sagemaker", "late": True, "sequence": "17",
     "data": {"x": 1}},
    {"id": 5, "n": 2**40, "f": 0.5, "o": {"a": [1]}, "status": None},
    {},
]


def check_message(body: bytes, headers: dict[str, bytes] | None = None) -> int:
    """Run the properties on one raw message; returns how many events it normalized to."""
    events, errors = normalize_all(RawMessage(body=body, headers=headers or {}))
    for err in errors:
        assert isinstance(err, NormalizeError), f"normalize returned {type(err).__name__}: {err}"
        assert isinstance(err.reason, str) and err.reason, "NormalizeError without a reason"
    for ev in events:
        text = ev.to_json()
        assert jsonutil.loads(text)["id"] == ev.id
        for enc in ENCODERS:
            rec = encode_routed(enc, "all", "t", ev)
            assert rec.key == ev.subject.encode()
            assert isinstance(rec.value, bytes)
            assert decode_record(rec.value, rec.headers)["id"] == ev.id
            value, meta = enc.encode(ev)
            held = Held(value, meta, ev.sequence, (ev.source, ev.id), late=True)
            dead = enc.dead_letter(DeadLetter("dlq", "late", enc.event_json(held), "s", "p"), held)
            assert len(dead.value) + sum(len(k) + len(v) for k, v in dead.headers) <= enc.max_record_bytes
        ce_headers(ev, content_type=False)
        jsonutil.loads(record_line(encode_routed(JSONL_ENCODER, "all", "t", ev)))
        check_filters(ev.to_dict())
        if ev.original is not None:
            check_filters(ev.original)
    if not errors:  # every object was normalized: the filters saw each one as ev.original above
        return len(events)
    try:
        doc = jsonutil.loads(body)
    except jsonutil.JSONDecodeError:
        return len(events)
    for obj in doc if type(doc) is list else [doc]:
        if type(obj) is dict:
            check_filters(obj)
    return len(events)
