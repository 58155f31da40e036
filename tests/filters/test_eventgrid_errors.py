"""Event Grid filter validation: bad shapes and Azure's limits are rejected with the path of the mistake."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.filters import compile_filter
from tests.filters.helpers import eg_error


def one(**filter_: Any) -> dict[str, Any]:
    """A spec with one advanced filter made of ``filter_``."""
    return {"advancedFilters": [filter_]}


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"includedEventTypes": "A"}, "includedEventTypes", "expected an array"),
        ({"includedEventTypes": ["A", 5]}, "includedEventTypes[1]", "expected a string"),
        ({"subjectBeginsWith": 5}, "subjectBeginsWith", "expected a string"),
        ({"isSubjectCaseSensitive": "yes"}, "isSubjectCaseSensitive", "expected true or false"),
        ({"enableAdvancedFilteringOnArrays": 1}, "enableAdvancedFilteringOnArrays", "expected true or false"),
        ({"advancedFilters": {"operatorType": "StringIn"}}, "advancedFilters", "expected an array"),
        (
            {"includedEventTypes": [], "subjectBeginWith": "x"},
            "subjectBeginWith",
            "unknown Event Grid filter",
        ),
        ({"advancedFilters": ["x"]}, "advancedFilters[0]", "must be an object"),
        (one(key="data.a", values=["x"]), "advancedFilters[0]", 'missing "operatorType"'),
        (
            one(operatorType="StringLike", key="data.a", values=["x"]),
            "advancedFilters[0].operatorType",
            "unknown operator type 'StringLike'",
        ),
        (
            one(operatorType="stringin", key="data.a", values=["x"]),
            "advancedFilters[0].operatorType",
            'did you mean "StringIn"',
        ),
        (one(operatorType="StringIn", values=["x"]), "advancedFilters[0]", 'missing "key"'),
        (one(operatorType="StringIn", key="", values=["x"]), "advancedFilters[0].key", "dotted path"),
        (one(operatorType="StringIn", key="data..a", values=["x"]), "advancedFilters[0].key", "dotted path"),
        (one(operatorType="StringIn", key=5, values=["x"]), "advancedFilters[0].key", "dotted path"),
        (
            one(operatorType="StringIn", key="data.a", vaules=["x"]),
            "advancedFilters[0].vaules",
            "unknown property",
        ),
        (one(operatorType="StringIn", key="data.a"), "advancedFilters[0]", 'requires "values"'),
        (one(operatorType="StringIn", key="data.a", value="x"), "advancedFilters[0].value", 'takes "values"'),
        (
            one(operatorType="StringIn", key="data.a", values="x"),
            "advancedFilters[0].values",
            "expected an array",
        ),
        (one(operatorType="StringIn", key="data.a", values=[]), "advancedFilters[0].values", "at least one"),
        (
            one(operatorType="StringIn", key="data.a", values=["ok", 5]),
            "advancedFilters[0].values[1]",
            "expected a string",
        ),
        (
            one(operatorType="StringContains", key="data.a", values=["x" * 513]),
            "advancedFilters[0].values[0]",
            "limited to 512 characters",
        ),
        (
            one(operatorType="NumberIn", key="data.a", values=[1, "2"]),
            "advancedFilters[0].values[1]",
            "expected a number",
        ),
        (
            one(operatorType="NumberIn", key="data.a", values=[True]),
            "advancedFilters[0].values[0]",
            "expected a number",
        ),
        (
            one(operatorType="NumberGreaterThan", key="data.a", values=[1]),
            "advancedFilters[0].values",
            'takes a single "value"',
        ),
        (one(operatorType="NumberGreaterThan", key="data.a"), "advancedFilters[0]", 'requires "value"'),
        (
            one(operatorType="NumberLessThan", key="data.a", value="1"),
            "advancedFilters[0].value",
            "expected a number",
        ),
        (
            one(operatorType="BoolEquals", key="data.a", value="true"),
            "advancedFilters[0].value",
            "expected true or false",
        ),
        (one(operatorType="IsNotNull", key="data.a", value=1), "advancedFilters[0].value", "takes no value"),
        (
            one(operatorType="NumberInRange", key="data.a", values=[1, 2]),
            "advancedFilters[0].values[0]",
            "[low, high] pair",
        ),
        (
            one(operatorType="NumberInRange", key="data.a", values=[[1, 2, 3]]),
            "advancedFilters[0].values[0]",
            "[low, high] pair",
        ),
        (
            one(operatorType="NumberNotInRange", key="data.a", values=[[5, 1]]),
            "advancedFilters[0].values[0]",
            "greater than high",
        ),
        (
            one(operatorType="NumberInRange", key="data.a", values=[[0, "9"]]),
            "advancedFilters[0].values[0][1]",
            "expected a number",
        ),
    ],
)
def test_invalid_filters_report_path(spec: dict[str, Any], path: str, fragment: str) -> None:
    """Each invalid Event Grid filter is rejected with the path of the offending property."""
    err = eg_error(spec)
    assert err.path == path, str(err)
    assert fragment in err.message, str(err)


def test_at_most_25_advanced_filters() -> None:
    """More than 25 advanced filters per subscription is rejected (Azure limit)."""
    filters = [{"operatorType": "IsNotNull", "key": f"data.k{i}"} for i in range(26)]
    compile_filter({"advancedFilters": filters[:25]}, "eventgrid")
    err = eg_error({"advancedFilters": filters})
    assert err.path == "advancedFilters"
    assert "at most 25 advanced filters" in err.message


def test_at_most_25_filter_values_across_all_filters() -> None:
    """The 25-value budget is shared by all filters of a subscription (Azure limit)."""
    ok = {
        "advancedFilters": [
            {"operatorType": "StringIn", "key": "data.a", "values": [str(i) for i in range(24)]},
            {"operatorType": "NumberGreaterThan", "key": "data.b", "value": 1},
        ]
    }
    compile_filter(ok, "eventgrid")
    too_many = {
        "advancedFilters": [
            *ok["advancedFilters"],
            {"operatorType": "BoolEquals", "key": "data.c", "value": True},
        ]
    }
    err = eg_error(too_many)
    assert err.path == "advancedFilters[2]"
    assert "at most 25 filter values" in err.message


def test_wrapped_filter_errors_include_the_wrapper_in_the_path() -> None:
    """Errors inside {"filter": {...}} carry the "filter." prefix so they point into the file."""
    err = eg_error({"filter": {"advancedFilters": [{"operatorType": "Nope", "key": "data.a"}]}})
    assert err.path == "filter.advancedFilters[0].operatorType"
    assert eg_error({"filter": ["x"]}).path == "filter"
