"""Regression tests: one per input the fuzzers found breaking normalize, filters or encoding (see tests/fuzz)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from bridge import jsonutil
from bridge.filters import compile_filter
from bridge.model import RawMessage
from bridge.normalize import normalize_all
from tests.fuzz.harness import check_message

EVENT_GRID: dict[str, Any] = {
    "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w",
    "subject": "experiments/e/runs/r", "eventType": "Microsoft.MachineLearningServices.RunCompleted",
    "eventTime": "2024-01-01T00:00:00Z", "id": "finding-1", "data": {"runStatus": "Completed"},
}
DEEP_ARRAY = "[" * 1000 + "1" + "]" * 1000


def _with(field: str, raw: str) -> bytes:
    """The Event Grid event with ``field`` set to the raw JSON text ``raw``."""
    return json.dumps({**EVENT_GRID, field: "@@"}).replace('"@@"', raw).encode()


def _reason(body: bytes) -> str:
    events, errors = normalize_all(RawMessage(body))
    assert events == [] and len(errors) == 1
    return errors[0].reason


def test_float_time_beyond_the_microsecond_range() -> None:
    """Finding: ``"eventTime": 1e308`` raised OverflowError (seconds * 1e3 is infinite); now an invalid timestamp."""
    assert _reason(_with("eventTime", "1e308")) == "invalid timestamp in field 'eventTime': 1e+308"


def test_ten_thousand_digit_time_string() -> None:
    """Finding: a 10,000-digit epoch string in ``eventTime`` raised ValueError (int() digit limit); now invalid."""
    reason = _reason(_with("eventTime", json.dumps("1" + "0" * 9999)))
    assert reason.startswith("invalid timestamp in field 'eventTime': '1000") and reason.endswith("...")


def test_deeply_nested_time_value_in_the_error_reason() -> None:
    """Finding: ``"eventTime"`` holding arrays nested 1000 deep raised RecursionError while the reason was built
    (repr); the reason now names the kind."""
    assert _reason(_with("eventTime", DEEP_ARRAY)) == "invalid timestamp in field 'eventTime': a JSON array"


def test_huge_integer_in_an_error_reason() -> None:
    """A 400-digit integer as ``eventTime`` is shown by its size in the reason, not as 400 digits."""
    assert _reason(_with("eventTime", "1" + "0" * 399)) == "invalid timestamp in field 'eventTime': a 400-digit integer"


def test_eventbridge_leaf_over_a_deeply_nested_array() -> None:
    """Finding: an EventBridge leaf pattern on a field holding arrays nested 1000 deep raised RecursionError
    (recursive flattening); the flattening is iterative now and finds the scalar."""
    event = {"data": {"x": orjson.loads(DEEP_ARRAY)}}
    assert compile_filter({"data": {"x": [1]}}, "eventbridge").matches(event) is True
    assert compile_filter({"data": {"x": [2]}}, "eventbridge").matches(event) is False


def test_eventbridge_object_pattern_over_a_deeply_nested_array() -> None:
    """Finding: an EventBridge object pattern (``{"x": {"y": ...}}``) over arrays nested 1000 deep raised
    RecursionError (recursive element walk); iterative now, with the same answers as before for shallow arrays."""
    deep = orjson.loads("[" * 1000 + '{"y": 1}' + "]" * 1000)
    f = compile_filter({"data": {"x": {"y": [1]}}}, "eventbridge")
    assert f.matches({"data": {"x": deep}}) is True
    assert f.matches({"data": {"x": [[{"y": 2}], [[{"y": 1}]]]}}) is True
    assert f.matches({"data": {"x": [[{"y": 2}], [[]], 3]}}) is False
    absent = compile_filter({"data": {"x": {"y": [{"exists": False}]}}}, "eventbridge")
    assert absent.matches({"data": {"x": [[[]]]}}) is True  # an empty nested array holds no object: y absent


def test_event_with_data_nested_300_deep_encodes() -> None:
    """Finding: data nested 300 deep normalized (orjson reads 1024 levels) but to_json/encode_event raised
    TypeError (orjson writes 255); every encoding succeeds now."""
    check_message(_with("data", "[" * 300 + "]" * 300))
    check_message(_with("data", '{"a":' * 1000 + "1" + "}" * 1000))


def test_infinite_float_beside_a_big_integer() -> None:
    """Finding (in the new exact JSON path): ``1e309`` next to an integer beyond 64 bits was read as infinity, so
    the event could not be encoded; it is malformed JSON, as orjson says without the big integer."""
    body = _with("data", '{"ModelName": 1e309, "ModelVersion": 18446744073709551616}')
    assert _reason(body).startswith("malformed JSON")
    with pytest.raises(jsonutil.JSONDecodeError):
        jsonutil.loads(body)


def test_lone_surrogate_after_a_huge_integer() -> None:
    """Finding (hypothesis, in the new exact JSON path): a lone surrogate escape after a 400-digit integer was
    accepted (orjson had stopped at the number) and the event then failed to encode; it is malformed JSON now,
    as without the integer."""
    body = _with("data", '{"ChannelName": 1' + "0" * 400 + ', "DataSource": "\\ud800"}')
    assert _reason(body).startswith("malformed JSON")
