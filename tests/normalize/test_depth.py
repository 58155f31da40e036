"""Nesting: an event whose data would nest its canonical form beyond what JSON parsers accept is refused with a
reason; one just within the limit normalizes and its canonical JSON parses again."""

from __future__ import annotations

from typing import Any

import orjson

from bridge import jsonutil
from bridge.model import RawMessage
from bridge.normalize import NormalizeError, normalize_all
from bridge.normalize.dispatch import MAX_DATA_DEPTH
from tests.normalize.corpus_util import corpus_lines

EB: dict[str, Any] = orjson.loads(corpus_lines("sagemaker")[0])
CE: dict[str, Any] = orjson.loads(corpus_lines("azureml_cloudevents")[4])


def nested(levels: int) -> Any:
    """A value that nests ``levels`` levels of arrays (``levels`` 0: a number)."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def eventbridge_with_data_depth(depth: int) -> bytes:
    """The corpus SageMaker event with one detail field nested so that the event's data nests ``depth`` levels."""
    assert jsonutil.nesting(EB["detail"]) < depth
    detail = {**EB["detail"], "Deep": nested(depth - 1)}  # the field sits one level below the data's top
    return jsonutil.dumps({**EB, "detail": detail})


def test_nesting_counts_objects_and_arrays() -> None:
    """nesting is 0 for a scalar, 1 for a flat object or array, and counts the deepest branch."""
    assert jsonutil.nesting(5) == 0 and jsonutil.nesting({}) == 1 and jsonutil.nesting([]) == 1
    assert jsonutil.nesting({"a": [1, {"b": [2]}], "c": 3}) == 4
    assert jsonutil.nesting(nested(5000)) == 5000


def test_data_at_the_limit_normalizes_and_its_canonical_json_parses_again() -> None:
    """data nesting MAX_DATA_DEPTH levels is accepted, and the canonical event is JSON that jsonutil (orjson's
    1024 levels) parses again."""
    events, errors = normalize_all(RawMessage(eventbridge_with_data_depth(MAX_DATA_DEPTH)))
    assert errors == [] and jsonutil.nesting(events[0].data) == MAX_DATA_DEPTH
    assert jsonutil.loads(events[0].to_json())["id"] == events[0].id


def test_data_deeper_than_the_limit_is_refused_with_its_depth() -> None:
    """An input that parses (under 1024 levels) but whose data nests beyond MAX_DATA_DEPTH is a NormalizeError
    naming the depth, as a single object and as an array element (with its index); the other element flows."""
    body = eventbridge_with_data_depth(MAX_DATA_DEPTH + 1)
    jsonutil.loads(body)  # the input itself is valid JSON within the parser's limit
    events, errors = normalize_all(RawMessage(body))
    assert len(events) == 0 and len(errors) == 1 and isinstance(errors[0], NormalizeError)
    assert f"data nested {MAX_DATA_DEPTH + 1} levels deep" in errors[0].reason
    good = orjson.dumps(CE)
    events, errors = normalize_all(RawMessage(b"[" + good + b"," + body + b"]"))
    assert [e.id for e in events] == [CE["id"]] and [e.index for e in errors] == [1]


def test_binary_mode_data_deeper_than_the_limit_is_refused() -> None:
    """The same limit applies to a Kafka binary-mode record's JSON data."""
    headers = {"ce_specversion": b"1.0", "ce_id": b"x1", "ce_source": b"s", "ce_type": b"t",
               "ce_time": b"2026-12-04T00:00:00Z", "content-type": b"application/json"}
    events, errors = normalize_all(RawMessage(jsonutil.dumps(nested(MAX_DATA_DEPTH + 1)), headers=headers))
    assert len(events) == 0 and "levels deep" in errors[0].reason
    events, errors = normalize_all(RawMessage(jsonutil.dumps(nested(MAX_DATA_DEPTH)), headers=headers))
    assert errors == [] and jsonutil.nesting(events[0].data) == MAX_DATA_DEPTH
