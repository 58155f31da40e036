"""Event Grid subscription filters: event types, subject filters, all 19 advanced operators and their
missing-key, null, type-mismatch and array semantics."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.filters.eventgrid import OPERATOR_TYPES
from tests.filters.helpers import AZUREML_MODEL_REGISTERED, RAW_CLOUDEVENT, RAW_EVENTGRID, eg


def adv(op: str, key: str = "data.k", **kw: Any) -> dict[str, Any]:
    """A filter spec with a single advanced filter."""
    return {"advancedFilters": [{"operatorType": op, "key": key, **kw}]}


def with_k(value: Any) -> dict[str, Any]:
    """An event whose data.k is ``value``."""
    return {"eventType": "T", "subject": "s", "data": {"k": value}}


# ------------------------------------------------------------------------------------------- event types


def test_included_event_types_match_event_grid_schema_case_insensitively() -> None:
    """includedEventTypes matches eventType of an Event Grid schema event, ignoring case."""
    spec = {"includedEventTypes": ["microsoft.machinelearningservices.modelregistered"]}
    assert eg(spec, RAW_EVENTGRID)
    assert not eg({"includedEventTypes": ["Microsoft.MachineLearningServices.RunCompleted"]}, RAW_EVENTGRID)


def test_included_event_types_match_cloudevents_type() -> None:
    """includedEventTypes matches the type attribute of a CloudEvents event."""
    assert eg({"includedEventTypes": ["Microsoft.MachineLearningServices.RunStatusChanged"]}, RAW_CLOUDEVENT)
    assert not eg({"includedEventTypes": ["Other"]}, RAW_CLOUDEVENT)


def test_included_event_types_on_canonical_events_use_type_or_original_type() -> None:
    """On a canonical event, includedEventTypes matches the canonical type or the original Azure type."""
    assert eg({"includedEventTypes": ["ml.model.registered"]}, AZUREML_MODEL_REGISTERED)
    assert eg(
        {"includedEventTypes": ["Microsoft.MachineLearningServices.ModelRegistered"]},
        AZUREML_MODEL_REGISTERED,
    )
    assert not eg({"includedEventTypes": ["ml.job.status_changed"]}, AZUREML_MODEL_REGISTERED)


def test_included_event_types_all_or_empty_means_every_type() -> None:
    """ "All", an empty list or null in includedEventTypes lets every type through."""
    assert eg({"includedEventTypes": ["All"]}, RAW_EVENTGRID)
    assert eg({"includedEventTypes": []}, RAW_EVENTGRID)
    assert eg({"includedEventTypes": None}, RAW_EVENTGRID)
    assert eg({}, RAW_EVENTGRID)


# ------------------------------------------------------------------------------------------------ subject


def test_subject_begins_and_ends_with_case_insensitive_by_default() -> None:
    """subjectBeginsWith/subjectEndsWith ignore case unless isSubjectCaseSensitive is true."""
    spec = {"subjectBeginsWith": "MODELS/", "subjectEndsWith": ":20"}
    assert eg(spec, RAW_EVENTGRID)
    assert not eg({"subjectBeginsWith": "endpoints/"}, RAW_EVENTGRID)
    assert not eg({"subjectEndsWith": ":21"}, RAW_EVENTGRID)


def test_subject_case_sensitive() -> None:
    """With isSubjectCaseSensitive the subject prefix/suffix must match case exactly."""
    assert not eg({"subjectBeginsWith": "MODELS/", "isSubjectCaseSensitive": True}, RAW_EVENTGRID)
    assert eg({"subjectBeginsWith": "models/", "isSubjectCaseSensitive": True}, RAW_EVENTGRID)
    assert not eg({"subjectEndsWith": "MODEL:20", "isSubjectCaseSensitive": True}, RAW_EVENTGRID)


def test_subject_filter_needs_a_subject() -> None:
    """A subject filter does not match an event without a string subject; empty filters are no filter."""
    assert not eg({"subjectBeginsWith": "a"}, {"eventType": "T"})
    assert not eg({"subjectEndsWith": "a"}, {"eventType": "T", "subject": None})
    assert eg({"subjectBeginsWith": "", "subjectEndsWith": ""}, {"eventType": "T"})


# ------------------------------------------------------------------------------------ the 19 operators

OPERATOR_CASES: list[tuple[str, dict[str, Any], list[Any], list[Any]]] = [
    ("NumberIn", {"values": [5, 1]}, [5, 1, 5.0], [4, "5", True]),
    ("NumberNotIn", {"values": [41, 0]}, [1, 41.5, "41", None], [41, 0, 0.0]),
    ("NumberLessThan", {"value": 100}, [99, 99.99, -1e9], [100, 101, "1"]),
    ("NumberGreaterThan", {"value": 20}, [21, 20.000001], [20, 19, "30"]),
    ("NumberLessThanOrEquals", {"value": 100}, [100, 100.0, 7], [100.5, False]),
    ("NumberGreaterThanOrEquals", {"value": 30}, [30, 31], [29.999, None]),
    ("BoolEquals", {"value": True}, [True], [False, 1, "true"]),
    ("StringContains", {"values": ["microsoft", "azure"]}, ["Azure data factory", "xMICROSOFTx"], ["aws", 5]),
    ("StringNotContains", {"values": ["contoso", "fabrikam"]}, ["northwind", 5, None], ["A Contoso shop"]),
    ("StringBeginsWith", {"values": ["event", "message"]}, ["Event hubs", "message"], ["hubs event", 1]),
    ("StringNotBeginsWith", {"values": ["event", "message"]}, ["hubs event", 7], ["EVENT hubs"]),
    ("StringEndsWith", {"values": ["jpg", "png"]}, ["eventgrid.PNG", "a.jpg"], ["a.gif", None]),
    ("StringNotEndsWith", {"values": ["jpg", "png"]}, ["a.gif", False], ["A.JPG"]),
    ("StringIn", {"values": ["contoso", "fabrikam"]}, ["Contoso", "FABRIKAM"], ["contoso2", None, 1]),
    ("StringNotIn", {"values": ["aws", "bridge"]}, ["azure", None, 5], ["AWS", "bridge"]),
    ("IsNullOrUndefined", {}, [None], ["", 0, False, {}]),
    ("IsNotNull", {}, ["", 0, False, {"a": 1}], [None]),
    (
        "NumberInRange",
        {"values": [[3.14159, 999.95], [3000, 4000]]},
        [3.14159, 999.95, 3500, 500],
        [3.14158, 1000, 4000.000001, "3500"],
    ),
    (
        "NumberNotInRange",
        {"values": [[3.14159, 999.95], [3000, 4000]]},
        [1, 2000, 4001, "3500"],
        [3.14159, 3000, 4000],
    ),
]


def test_the_operator_table_covers_all_19_operators() -> None:
    """The per-operator cases below cover exactly the 19 Event Grid operator types."""
    assert {case[0] for case in OPERATOR_CASES} == OPERATOR_TYPES
    assert len(OPERATOR_TYPES) == 19


@pytest.mark.parametrize(
    ("op", "args", "matching", "not_matching"), OPERATOR_CASES, ids=[c[0] for c in OPERATOR_CASES]
)
def test_operator(op: str, args: dict[str, Any], matching: list[Any], not_matching: list[Any]) -> None:
    """Each operator accepts the values it should and rejects the others (string ops ignore case)."""
    spec = adv(op, **args)
    for value in matching:
        assert eg(spec, with_k(value)), (op, value)
    for value in not_matching:
        assert not eg(spec, with_k(value)), (op, value)


MISSING_KEY_EXPECTED = {
    "NumberIn": False,
    "NumberNotIn": True,
    "NumberLessThan": False,
    "NumberGreaterThan": False,
    "NumberLessThanOrEquals": False,
    "NumberGreaterThanOrEquals": False,
    "BoolEquals": False,
    "StringContains": False,
    "StringNotContains": False,
    "StringBeginsWith": False,
    "StringNotBeginsWith": False,
    "StringEndsWith": False,
    "StringNotEndsWith": False,
    "StringIn": False,
    "StringNotIn": True,
    "IsNullOrUndefined": True,
    "IsNotNull": False,
    "NumberInRange": False,
    "NumberNotInRange": True,
}


@pytest.mark.parametrize(("op", "args", "_m", "_n"), OPERATOR_CASES, ids=[c[0] for c in OPERATOR_CASES])
def test_missing_key(op: str, args: dict[str, Any], _m: Any, _n: Any) -> None:
    """A missing key matches only NumberNotIn, StringNotIn, NumberNotInRange and IsNullOrUndefined."""
    assert eg(adv(op, **args), {"eventType": "T", "data": {"other": 1}}) is MISSING_KEY_EXPECTED[op]
    assert eg(adv(op, key="nothing.here.at.all", **args), {"eventType": "T"}) is MISSING_KEY_EXPECTED[op]


# ------------------------------------------------------------------------------------------------ arrays


def test_arrays_do_not_match_when_array_filtering_is_disabled() -> None:
    """Without enableAdvancedFilteringOnArrays an array value never matches, whatever the operator."""
    cases: list[tuple[str, dict[str, Any]]] = [
        ("StringIn", {"values": ["a"]}),
        ("StringNotIn", {"values": ["z"]}),
        ("NumberIn", {"values": [1]}),
        ("IsNotNull", {}),
        ("IsNullOrUndefined", {}),
    ]
    for op, args in cases:
        assert not eg(adv(op, **args), with_k(["a", 1])), op


def test_arrays_positive_operators_match_any_element_when_enabled() -> None:
    """With array filtering on, positive operators match when any element matches."""
    on = {"enableAdvancedFilteringOnArrays": True}
    assert eg({**adv("StringIn", values=["b"]), **on}, with_k(["a", "B"]))
    assert eg({**adv("NumberGreaterThan", value=10), **on}, with_k([1, 11]))
    assert eg({**adv("NumberInRange", values=[[5, 6]]), **on}, with_k([1, 5.5]))
    assert eg({**adv("BoolEquals", value=False), **on}, with_k([True, False]))
    assert not eg({**adv("StringIn", values=["c"]), **on}, with_k(["a", "b"]))
    assert not eg({**adv("StringIn", values=["a"]), **on}, with_k([]))
    assert eg({**adv("IsNotNull"), **on}, with_k([]))


def test_arrays_not_operators_fail_if_any_element_matches_when_enabled() -> None:
    """With array filtering on, NOT operators fail as soon as one element matches a value."""
    on = {"enableAdvancedFilteringOnArrays": True}
    assert not eg({**adv("StringNotIn", values=["a"]), **on}, with_k(["b", "A"]))
    assert eg({**adv("StringNotIn", values=["a"]), **on}, with_k(["b", "c"]))
    assert not eg({**adv("NumberNotInRange", values=[[0, 1]]), **on}, with_k([5, 0.5]))
    assert eg({**adv("StringNotContains", values=["x"]), **on}, with_k([]))


def test_arrays_ignore_elements_of_the_wrong_type() -> None:
    """Array elements whose type does not fit the operator are ignored, not coerced."""
    on = {"enableAdvancedFilteringOnArrays": True}
    assert not eg({**adv("NumberIn", values=[5]), **on}, with_k(["5", None, {"a": 5}]))
    assert eg({**adv("NumberNotIn", values=[5]), **on}, with_k(["5", "x"]))


# ------------------------------------------------------------------------------------------ semantics


def test_filters_are_anded_and_values_ored() -> None:
    """Different advanced filters must all pass; the values of one filter are alternatives."""
    spec: dict[str, Any] = {
        "advancedFilters": [
            {"operatorType": "StringContains", "key": "subject", "values": ["models/", "endpoints/"]},
            {"operatorType": "NumberGreaterThanOrEquals", "key": "data.ModelVersion", "value": 20},
        ]
    }
    assert eg(spec, RAW_EVENTGRID)
    spec["advancedFilters"][1]["value"] = 21
    assert not eg(spec, RAW_EVENTGRID)


def test_nested_keys_and_case_insensitive_key_lookup() -> None:
    """Keys are dotted paths (data.ModelTags.area); a key spelt in another case still finds the field."""
    assert eg(adv("StringIn", key="data.ModelTags.area", values=["diabetes"]), RAW_EVENTGRID)
    assert eg(adv("StringIn", key="Data.modeltags.AREA", values=["diabetes"]), RAW_EVENTGRID)
    assert eg(adv("StringIn", key="Subject", values=["models/sklearn_regression_model:20"]), RAW_EVENTGRID)
    assert not eg(adv("StringIn", key="data.ModelTags.area.deeper", values=["diabetes"]), RAW_EVENTGRID)


def test_envelope_keys_work_across_schemas() -> None:
    """eventType finds type on CloudEvents/canonical events and topic finds source, and vice versa."""
    assert eg(
        adv("StringIn", key="eventType", values=["Microsoft.MachineLearningServices.RunStatusChanged"]),
        RAW_CLOUDEVENT,
    )
    assert eg(adv("StringIn", key="eventType", values=["ml.model.registered"]), AZUREML_MODEL_REGISTERED)
    assert eg(adv("StringBeginsWith", key="topic", values=["/subscriptions/"]), RAW_CLOUDEVENT)
    assert eg(
        adv("StringIn", key="type", values=["Microsoft.MachineLearningServices.ModelRegistered"]),
        RAW_EVENTGRID,
    )


def test_numbers_are_exact_decimals() -> None:
    """Numeric filters compare decimals exactly: 0.1 + 0.2 is not 0.3, 1e2 equals 100."""
    assert not eg(adv("NumberIn", values=[0.3]), with_k(0.1 + 0.2))
    assert eg(adv("NumberIn", values=[0.3]), with_k(0.3))
    assert eg(adv("NumberIn", values=[100]), with_k(1e2))
    assert eg(adv("NumberGreaterThan", value=0.3), with_k(0.1 + 0.2))
    assert eg(adv("NumberLessThanOrEquals", value=0.3), with_k(0.3))


def test_null_values() -> None:
    """A null value is present but typeless: IsNullOrUndefined true, typed positive operators false."""
    assert eg(adv("IsNullOrUndefined"), with_k(None))
    assert not eg(adv("IsNotNull"), with_k(None))
    assert not eg(adv("StringIn", values=["null"]), with_k(None))
    assert eg(adv("StringNotIn", values=["null"]), with_k(None))


def test_wrapped_filter_form() -> None:
    """The ARM/az form {"filter": {...}} is accepted and means the same as the bare filter."""
    bare = {
        "includedEventTypes": ["Microsoft.MachineLearningServices.ModelRegistered"],
        "advancedFilters": [{"operatorType": "NumberIn", "key": "data.ModelVersion", "values": [20]}],
    }
    assert eg({"filter": bare}, RAW_EVENTGRID)
    assert not eg({"filter": {**bare, "subjectBeginsWith": "endpoints/"}}, RAW_EVENTGRID)


def test_arm_export_with_nulls_and_capitalised_property_names() -> None:
    """Exports with null properties and capitalised advanced-filter property names are understood."""
    spec = {
        "filter": {
            "advancedFilters": [
                {"OperatorType": "StringIn", "Key": "data.ModelName", "Values": ["sklearn_regression_model"]}
            ],
            "enableAdvancedFilteringOnArrays": None,
            "includedEventTypes": None,
            "isSubjectCaseSensitive": None,
            "subjectBeginsWith": "",
            "subjectEndsWith": "",
        }
    }
    assert eg(spec, RAW_EVENTGRID)


def test_string_operators_read_numbers_and_booleans_as_json_text() -> None:
    """String operators see numbers and booleans as JSON text, as in the docs' CloudEvents example."""
    event = {**RAW_CLOUDEVENT, "comexampleothervalue": 5, "flag": True, "ratio": 5.0}
    assert eg(adv("StringBeginsWith", key="comexampleothervalue", values=["5", "1"]), event)
    assert eg(adv("StringIn", key="flag", values=["TRUE"]), event)
    assert eg(adv("StringIn", key="ratio", values=["5.0"]), event)
    assert not eg(adv("StringIn", key="ratio", values=["5"]), event)
    assert not eg(adv("StringNotIn", key="comexampleothervalue", values=["5"]), event)
    on = {"enableAdvancedFilteringOnArrays": True}
    assert eg({**adv("StringIn", values=["5"]), **on}, with_k([{"a": 1}, 5]))


def test_number_and_bool_operators_never_read_strings() -> None:
    """Numeric and boolean operators ignore strings, even ones that spell a number or a boolean."""
    assert not eg(adv("NumberIn", values=[5]), with_k("5"))
    assert not eg(adv("NumberGreaterThan", value=1), with_k("5"))
    assert not eg(adv("BoolEquals", value=True), with_k("true"))
    assert eg(adv("NumberNotIn", values=[5]), with_k("5"))
