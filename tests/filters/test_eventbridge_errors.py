"""EventBridge pattern validation: each rejected shape raises FilterError naming the path of the mistake."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.filters import FilterError, compile_filter
from tests.filters.helpers import eb_error


def test_unknown_operator_message_and_path() -> None:
    """A misspelt operator is reported with its leaf path and the operator name."""
    err = eb_error({"detail": {"status": [{"prefx": "a"}]}})
    assert str(err) == 'detail.status[0]: unknown operator "prefx"'
    assert err.path == "detail.status[0]"
    assert err.message == 'unknown operator "prefx"'
    assert isinstance(err, ValueError)


@pytest.mark.parametrize(
    ("pattern", "path", "fragment"),
    [
        # structure
        ({"detail": {"status": "failed"}}, "detail.status", "must be an object or an array"),
        ({"detail": {"status": 5}}, "detail.status", "must be an object or an array"),
        ({"detail": {"status": None}}, "detail.status", "got null"),
        ({"detail": {"status": []}}, "detail.status", "empty arrays are not allowed"),
        ({"detail": {}}, "detail", "empty objects are not allowed"),
        ({"a": ["x", ["y"]]}, "a[1]", "got array"),
        ({"a": [{}]}, "a[0]", "expression name not found"),
        ({"a": [{"prefix": "x", "suffix": "y"}]}, "a[0]", "only one key allowed"),
        # string operators
        ({"a": [{"prefix": 5}]}, "a[0].prefix", "must be a string"),
        ({"a": [{"prefix": {"wildcard": "x"}}]}, "a[0].prefix", "unsupported prefix pattern"),
        (
            {"a": [{"prefix": {"equals-ignore-case": 1}}]},
            "a[0].prefix.equals-ignore-case",
            "must be a string",
        ),
        ({"a": [{"suffix": {"equals-ignore-case": "x", "prefix": "y"}}]}, "a[0].suffix", "only one key"),
        ({"a": [{"equals-ignore-case": ["x"]}]}, "a[0].equals-ignore-case", "must be a string"),
        ({"a": [{"exactly": 1}]}, "a[0].exactly", "must be a string"),
        ({"a": [{"wildcard": "a**b"}]}, "a[0].wildcard", "consecutive wildcard"),
        ({"a": [{"wildcard": "a\\b"}]}, "a[0].wildcard", "invalid escape"),
        ({"a": [{"wildcard": None}]}, "a[0].wildcard", "must be a string"),
        # numeric
        ({"a": [{"numeric": 5}]}, "a[0].numeric", "must be an array"),
        ({"a": [{"numeric": []}]}, "a[0].numeric", "empty"),
        ({"a": [{"numeric": [5, ">"]}]}, "a[0].numeric[0]", "expected an operator"),
        ({"a": [{"numeric": ["!=", 5]}]}, "a[0].numeric[0]", 'unrecognized numeric operator "!="'),
        ({"a": [{"numeric": [">"]}]}, "a[0].numeric", "missing operand"),
        ({"a": [{"numeric": [">", "5"]}]}, "a[0].numeric[1]", "must be a number"),
        ({"a": [{"numeric": [">", True]}]}, "a[0].numeric[1]", "must be a number"),
        ({"a": [{"numeric": ["=", 5, "<", 6]}]}, "a[0].numeric", "too many elements"),
        ({"a": [{"numeric": ["<", 5, ">", 1]}]}, "a[0].numeric", "too many elements"),
        ({"a": [{"numeric": [">", 0, ">", 5]}]}, "a[0].numeric[2]", "bad numeric range operator"),
        ({"a": [{"numeric": [">", 0, 5]}]}, "a[0].numeric[2]", "bad value in numeric range"),
        ({"a": [{"numeric": [">", 0, "<"]}]}, "a[0].numeric", "missing operand"),
        ({"a": [{"numeric": [">", 0, "<", 5, 6]}]}, "a[0].numeric", "too many terms"),
        ({"a": [{"numeric": [">", 5, "<", 5]}]}, "a[0].numeric", "bottom must be less than top"),
        ({"a": [{"numeric": [">=", 9, "<=", 1]}]}, "a[0].numeric", "bottom must be less than top"),
        ({"a": [{"numeric": ["<", 5000000001]}]}, "a[0].numeric[1]", "between -5.0E9 and 5.0E9"),
        ({"a": [{"numeric": [">", -6e9]}]}, "a[0].numeric[1]", "between -5.0E9 and 5.0E9"),
        ({"a": [{"numeric": ["=", 0.1234567]}]}, "a[0].numeric[1]", "more than 6 decimal places"),
        # anything-but
        (
            {"a": [{"anything-but": ["x", 1]}]},
            "a[0].anything-but",
            "all values must be strings or all numbers",
        ),
        ({"a": [{"anything-but": []}]}, "a[0].anything-but", "mixed or empty"),
        ({"a": [{"anything-but": ["x", None]}]}, "a[0].anything-but[1]", "only strings or numbers"),
        ({"a": [{"anything-but": [True]}]}, "a[0].anything-but[0]", "only strings or numbers"),
        ({"a": [{"anything-but": None}]}, "a[0].anything-but", "must be an array, a single string/number"),
        ({"a": [{"anything-but": {"exists": True}}]}, "a[0].anything-but.exists", "unsupported anything-but"),
        ({"a": [{"anything-but": {"prefix": ""}}]}, "a[0].anything-but.prefix", "empty prefix"),
        ({"a": [{"anything-but": {"suffix": ["x", ""]}}]}, "a[0].anything-but.suffix", "empty suffix"),
        ({"a": [{"anything-but": {"prefix": 5}}]}, "a[0].anything-but.prefix", "must be a string"),
        ({"a": [{"anything-but": {"wildcard": ["ok*", "**"]}}]}, "a[0].anything-but.wildcard", "consecutive"),
        (
            {"a": [{"anything-but": {"equals-ignore-case": [1]}}]},
            "a[0].anything-but.equals-ignore-case[0]",
            "must be a string",
        ),
        ({"a": [{"anything-but": {"prefix": "x", "suffix": "y"}}]}, "a[0].anything-but", "only one key"),
        ({"a": [{"anything-but": {}}]}, "a[0].anything-but", "expression name not found"),
        ({"a": [{"anything-but": [1, 6e9]}]}, "a[0].anything-but[1]", "between -5.0E9 and 5.0E9"),
        (
            {"a": [{"anything-but": {"equals-ignore-case": []}}]},
            "a[0].anything-but.equals-ignore-case",
            "must not be empty",
        ),
        # exists, cidr
        ({"a": [{"exists": "true"}]}, "a[0].exists", "must be true or false"),
        ({"a": [{"cidr": "10.0.0.0"}]}, "a[0].cidr", "one '/' required"),
        ({"a": [{"cidr": "10.0.0.0/x"}]}, "a[0].cidr", "mask bits must be an integer"),
        ({"a": [{"cidr": "10.0.0.0/-1"}]}, "a[0].cidr", "must not be negative"),
        ({"a": [{"cidr": "10.0.0.0/32"}]}, "a[0].cidr", "IPv4 mask bits must be < 32"),
        ({"a": [{"cidr": "::/128"}]}, "a[0].cidr", "IPv6 mask bits must be < 128"),
        ({"a": [{"cidr": "300.0.0.0/8"}]}, "a[0].cidr", "invalid IP address"),
        ({"a": [{"cidr": "example.com/8"}]}, "a[0].cidr", "invalid IP address"),
        ({"a": [{"cidr": 10}]}, "a[0].cidr", "must be a string"),
        # $or
        ({"$or": {"a": ["x"]}}, "$or", "array of objects"),
        ({"$or": [{"a": ["x"]}]}, "$or", "at least 2 objects"),
        ({"$or": [{"a": ["x"]}, ["b"]]}, "$or[1]", "only JSON objects"),
        ({"$or": [{"a": ["x"]}, {}]}, "$or[1]", "empty objects"),
        ({"$or": [{"a": ["x"]}, {"prefix": ["y"]}]}, "$or[1].prefix", "reserved word"),
        ({"d": {"$or": [{"a": ["x"]}, {"e": {"numeric": ["y"]}}]}}, "d.$or[1].e.numeric", "reserved word"),
        ({"a": ["x"], "$or": [{"a": ["y"]}, {"b": ["z"]}]}, "$or[0].a", "cannot be allowed multiple times"),
        (
            {"d": {"$or": [{"a": [{"prefx": "x"}]}, {"b": ["z"]}]}},
            "d.$or[0].a[0]",
            'unknown operator "prefx"',
        ),
    ],
)
def test_invalid_patterns_report_path(pattern: dict[str, Any], path: str, fragment: str) -> None:
    """Each invalid pattern shape is rejected with the JSON path of the offending element."""
    err = eb_error(pattern)
    assert err.path == path, str(err)
    assert fragment in err.message, str(err)
    assert str(err) == f"{path}: {err.message}"


def test_root_must_be_an_object() -> None:
    """A pattern that is not a JSON object is rejected at the root path "$"."""
    err = eb_error(["a"])
    assert err.path == "$"
    assert "JSON object" in err.message


def test_error_paths_are_prefixed_with_the_caller_location() -> None:
    """compile_filter(path=...) prefixes every error path, so config errors point into the config file."""
    with pytest.raises(FilterError) as info:
        compile_filter({"detail": {"status": [{"prefx": "a"}]}}, path="routes[1].filter")
    assert str(info.value) == 'routes[1].filter.detail.status[0]: unknown operator "prefx"'


def test_keys_with_dots_are_quoted_in_paths() -> None:
    """A field name containing a dot is quoted in the error path so the path stays unambiguous."""
    err = eb_error({"detail": {"a.b": "x"}})
    assert err.path == 'detail["a.b"]'


def test_or_expansion_is_bounded() -> None:
    """A pattern whose $or alternatives multiply past the limit is rejected instead of exploding."""
    branch = {"$or": [{"a": ["1"]}, {"b": ["1"]}, {"c": ["1"]}, {"d": ["1"]}]}
    pattern = {f"f{i}": branch for i in range(6)}  # 4**6 = 4096 alternatives
    err = eb_error(pattern)
    assert "too complex" in err.message


def test_dotted_and_nested_spellings_of_one_field_conflict() -> None:
    """Constraining a.b both as "a.b" and as a -> b is the same path twice, which EventBridge refuses."""
    err = eb_error({"a.b": ["x"], "a": {"b": ["y"]}})
    assert err.path == "a.b"
    assert "constrained twice" in err.message
