"""EventBridge event patterns: every operator (matching and non-matching) and the structural semantics."""

from __future__ import annotations

import time

import pytest

from tests.filters.helpers import RAW_SAGEMAKER, eb

# ------------------------------------------------------------------------------------------- exact values


def test_exact_string_any_of_the_listed_values() -> None:
    """A leaf array lists alternatives: the string must equal one of them, exactly and case-sensitively."""
    pattern = {"status": ["failed", "stopped"]}
    assert eb(pattern, {"status": "failed"})
    assert eb(pattern, {"status": "stopped"})
    assert not eb(pattern, {"status": "Failed"})
    assert not eb(pattern, {"status": "completed"})
    assert not eb(pattern, {"other": "failed"})


def test_exact_number_compares_by_value_not_text() -> None:
    """A number matches an equal number whatever its spelling (5, 5.0, 1e2 == 100), never a string."""
    assert eb({"n": [5]}, {"n": 5})
    assert eb({"n": [5]}, {"n": 5.0})
    assert eb({"n": [1e2]}, {"n": 100})
    assert eb({"n": [100]}, {"n": 1e2})
    assert eb({"n": [-0.0]}, {"n": 0})
    assert not eb({"n": [5]}, {"n": 6})
    assert not eb({"n": [5]}, {"n": "5"})
    assert not eb({"n": ["5"]}, {"n": 5})


def test_exact_large_integers_stay_exact() -> None:
    """Integers beyond double precision (account numbers) compare exactly, not after float rounding."""
    assert eb({"account": [123456789012345678]}, {"account": 123456789012345678})
    assert not eb({"account": [123456789012345678]}, {"account": 123456789012345679})
    assert eb({"account": [1e23]}, {"account": 1e23})


def test_exact_booleans_are_not_numbers() -> None:
    """true/false match JSON booleans only: not 1/0 and not the strings "true"/"false"."""
    assert eb({"ok": [True]}, {"ok": True})
    assert not eb({"ok": [True]}, {"ok": False})
    assert not eb({"ok": [True]}, {"ok": 1})
    assert not eb({"ok": [True]}, {"ok": "true"})
    assert not eb({"n": [1]}, {"n": True})
    assert eb({"ok": [False]}, {"ok": False})
    assert not eb({"ok": [False]}, {"ok": 0})


def test_exact_null_and_empty_string_are_different() -> None:
    """[null] matches JSON null only, [""] the empty string only; a missing field matches neither."""
    assert eb({"x": [None]}, {"x": None})
    assert not eb({"x": [None]}, {"x": ""})
    assert not eb({"x": [None]}, {})
    assert eb({"x": [""]}, {"x": ""})
    assert not eb({"x": [""]}, {"x": None})


def test_exactly_operator_matches_strings() -> None:
    """The event-ruler "exactly" operator is exact string equality."""
    assert eb({"s": [{"exactly": "a*b"}]}, {"s": "a*b"})
    assert not eb({"s": [{"exactly": "a*b"}]}, {"s": "axb"})


def test_exact_ip_literal_matches_any_spelling_of_the_address() -> None:
    """A string value that is an IP literal matches the same address written differently (IPv6 forms)."""
    assert eb({"ip": ["2001:db8::1"]}, {"ip": "2001:DB8:0:0:0:0:0:1"})
    assert eb({"ip": ["10.0.0.1"]}, {"ip": "10.0.0.1"})
    assert not eb({"ip": ["2001:db8::1"]}, {"ip": "2001:db8::2"})


# ------------------------------------------------------------------------------------ string operators


def test_prefix() -> None:
    """prefix matches strings that start with it, case-sensitively, and never non-strings."""
    pattern = {"type": [{"prefix": "ml.job."}]}
    assert eb(pattern, {"type": "ml.job.status_changed"})
    assert not eb(pattern, {"type": "ML.JOB.status_changed"})
    assert not eb(pattern, {"type": "xml.job."})
    assert not eb({"n": [{"prefix": "1"}]}, {"n": 12})


def test_prefix_equals_ignore_case() -> None:
    """{"prefix": {"equals-ignore-case": ...}} matches a prefix in any letter case."""
    pattern = {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}
    assert eb(pattern, {"service": "eventbridge"})
    assert eb(pattern, {"service": "EVENTBRIDGE"})
    assert not eb(pattern, {"service": "bridge"})


def test_suffix() -> None:
    """suffix matches strings that end with it, case-sensitively."""
    pattern = {"file": [{"suffix": ".png"}]}
    assert eb(pattern, {"file": "a/b.png"})
    assert not eb(pattern, {"file": "a/b.PNG"})
    assert not eb(pattern, {"file": "a/b.png.txt"})


def test_suffix_equals_ignore_case() -> None:
    """{"suffix": {"equals-ignore-case": ...}} matches a suffix in any letter case."""
    pattern = {"file": [{"suffix": {"equals-ignore-case": ".png"}}]}
    assert eb(pattern, {"file": "a/b.PNG"})
    assert eb(pattern, {"file": "a/b.png"})
    assert not eb(pattern, {"file": "a/b.jpg"})


def test_equals_ignore_case() -> None:
    """equals-ignore-case matches the whole string in any letter case, and only strings."""
    pattern = {"name": [{"equals-ignore-case": "alice"}]}
    assert eb(pattern, {"name": "ALICE"})
    assert eb(pattern, {"name": "Alice"})
    assert not eb(pattern, {"name": "Alicia"})
    assert not eb({"n": [{"equals-ignore-case": "1"}]}, {"n": 1})


@pytest.mark.parametrize(
    ("wildcard", "matching", "not_matching"),
    [
        ("training-job/*", ["training-job/", "training-job/kmeans"], ["xtraining-job/a", "processing-job/a"]),
        ("*/kmeans-1", ["training-job/kmeans-1", "/kmeans-1"], ["training-job/kmeans-10"]),
        ("*lib*", ["dir/lib/x", "lib"], ["li b"]),
        ("a*b*c", ["abc", "a-b-c", "aXXbYYc"], ["ab", "acb", "abcx"]),
        ("exact", ["exact"], ["exactly", "Exact"]),
        ("a\\*b", ["a*b"], ["axb", "a\\*b"]),
        ("a\\\\*", ["a\\", "a\\zz"], ["a", "ab"]),
        ("*", ["", "anything"], []),
    ],
)
def test_wildcard(wildcard: str, matching: list[str], not_matching: list[str]) -> None:
    """wildcard: * is any run of characters, the whole value must match, \\* and \\\\ are literals."""
    pattern = {"v": [{"wildcard": wildcard}]}
    for value in matching:
        assert eb(pattern, {"v": value}), value
    for value in not_matching:
        assert not eb(pattern, {"v": value}), value
    assert not eb(pattern, {"v": 5})


# ------------------------------------------------------------------------------------------ anything-but


def test_anything_but_single_string() -> None:
    """anything-but "x" matches any present value except "x", including other types and null."""
    pattern = {"state": [{"anything-but": "initializing"}]}
    assert eb(pattern, {"state": "running"})
    assert eb(pattern, {"state": 5})
    assert eb(pattern, {"state": None})
    assert eb(pattern, {"state": "INITIALIZING"})
    assert not eb(pattern, {"state": "initializing"})
    assert not eb(pattern, {})


def test_anything_but_string_list() -> None:
    """anything-but with a list of strings excludes every listed string."""
    pattern = {"state": [{"anything-but": ["stopped", "overloaded"]}]}
    assert eb(pattern, {"state": "running"})
    assert not eb(pattern, {"state": "stopped"})
    assert not eb(pattern, {"state": "overloaded"})


def test_anything_but_numbers() -> None:
    """anything-but with numbers excludes equal numbers only; a numeric string is not excluded."""
    single = {"x": [{"anything-but": 123}]}
    assert eb(single, {"x": 124})
    assert not eb(single, {"x": 123})
    assert not eb(single, {"x": 123.0})
    assert eb(single, {"x": "123"})
    many = {"x": [{"anything-but": [100, 200, 300]}]}
    assert eb(many, {"x": 150})
    assert not eb(many, {"x": 2e2})


def test_anything_but_prefix() -> None:
    """anything-but prefix (single or list) excludes strings starting with any of the prefixes."""
    assert eb({"r": [{"anything-but": {"prefix": "us-"}}]}, {"r": "eu-west-1"})
    assert not eb({"r": [{"anything-but": {"prefix": "us-"}}]}, {"r": "us-east-1"})
    listed = {"r": [{"anything-but": {"prefix": ["us-", "eu-"]}}]}
    assert eb(listed, {"r": "ap-south-1"})
    assert not eb(listed, {"r": "eu-west-1"})


def test_anything_but_suffix() -> None:
    """anything-but suffix excludes strings ending with the suffix."""
    pattern = {"f": [{"anything-but": {"suffix": ".png"}}]}
    assert eb(pattern, {"f": "a.jpg"})
    assert not eb(pattern, {"f": "a.png"})


def test_anything_but_equals_ignore_case() -> None:
    """anything-but equals-ignore-case (single or list) excludes the values in any letter case."""
    pattern = {"s": [{"anything-but": {"equals-ignore-case": "initializing"}}]}
    assert eb(pattern, {"s": "running"})
    assert not eb(pattern, {"s": "INITIALIZING"})
    listed = {"s": [{"anything-but": {"equals-ignore-case": ["a", "B"]}}]}
    assert eb(listed, {"s": "c"})
    assert not eb(listed, {"s": "b"})


def test_anything_but_wildcard() -> None:
    """anything-but wildcard (single or list) excludes strings the wildcard matches."""
    pattern = {"p": [{"anything-but": {"wildcard": "*/lib/*"}}]}
    assert eb(pattern, {"p": "/usr/bin/x"})
    assert not eb(pattern, {"p": "/usr/lib/x"})
    listed = {"p": [{"anything-but": {"wildcard": ["*.png", "*.jpg"]}}]}
    assert eb(listed, {"p": "a.gif"})
    assert not eb(listed, {"p": "a.jpg"})


def test_anything_but_on_arrays_matches_when_some_element_is_not_excluded() -> None:
    """On an event array, anything-but matches as soon as one element is not excluded."""
    pattern = {"tags": [{"anything-but": "x"}]}
    assert eb(pattern, {"tags": ["x", "y"]})
    assert not eb(pattern, {"tags": ["x", "x"]})
    assert not eb(pattern, {"tags": []})


# ---------------------------------------------------------------------------------------------- numeric


def test_numeric_range() -> None:
    """numeric [">", 0, "<=", 5] is an open bottom and a closed top."""
    pattern = {"c": [{"numeric": [">", 0, "<=", 5]}]}
    assert eb(pattern, {"c": 5})
    assert eb(pattern, {"c": 0.000001})
    assert eb(pattern, {"c": 4.5})
    assert not eb(pattern, {"c": 0})
    assert not eb(pattern, {"c": 5.000001})
    assert not eb(pattern, {"c": "3"})
    assert not eb(pattern, {"c": True})


@pytest.mark.parametrize(
    ("expr", "inside", "outside"),
    [
        (["<", 10], [9.999999, -5e9, 9], [10, 10.5]),
        (["<=", 10], [10, 10.0], [10.000001]),
        ([">", 10], [10.000001, 11], [10, 9]),
        ([">=", 10], [10, 1e2], [9.999999]),
        (["=", 301.8], [3.018e2, 301.8], [301.800001, 301]),
        ([">=", -1, "<", 1], [-1, 0, 0.999999], [1, -1.000001]),
    ],
)
def test_numeric_operators(expr: list[object], inside: list[float], outside: list[float]) -> None:
    """Each numeric comparison operator and range form, at and around its boundaries."""
    pattern = {"v": [{"numeric": expr}]}
    for value in inside:
        assert eb(pattern, {"v": value}), value
    for value in outside:
        assert not eb(pattern, {"v": value}), value


def test_numeric_exactness() -> None:
    """Numbers compare as the decimals they were written as: 0.1 + 0.2 is not 0.3, 1e2 is 100."""
    tricky = 0.1 + 0.2
    assert not eb({"v": [0.3]}, {"v": tricky})
    assert not eb({"v": [{"numeric": ["=", 0.3]}]}, {"v": tricky})
    assert eb({"v": [{"numeric": [">", 0.3]}]}, {"v": tricky})
    assert eb({"v": [{"numeric": ["<=", 0.3]}]}, {"v": 0.3})
    assert eb({"v": [{"numeric": ["=", 100]}]}, {"v": 1e2})
    assert eb({"v": [{"numeric": ["<", 0.3]}]}, {"v": 0.299999})
    assert not eb({"v": [{"numeric": ["<", 5]}]}, {"v": 5.0})
    assert eb({"v": [{"numeric": ["<", 5.5]}]}, {"v": 5})


# ----------------------------------------------------------------------------------------------- exists


def test_exists_true_matches_present_values_including_null() -> None:
    """exists: true matches any present scalar (null included), not a missing field or an object."""
    pattern = {"d": {"c": [{"exists": True}]}}
    assert eb(pattern, {"d": {"c": 5}})
    assert eb(pattern, {"d": {"c": None}})
    assert eb(pattern, {"d": {"c": [1]}})
    assert not eb(pattern, {"d": {}})
    assert not eb(pattern, {"d": {"c": {"c1": 100}}})
    assert not eb(pattern, {"d": {"c": []}})
    assert not eb(pattern, {})


def test_exists_false_matches_absent_leaves() -> None:
    """exists: false matches a missing field, an object (not a leaf) and an empty array; not a value."""
    pattern = {"d": {"c": [{"exists": False}]}}
    assert eb(pattern, {"d": {"state": "x"}})
    assert eb(pattern, {"d": {"c": {"c1": 100}}})
    assert eb(pattern, {"d": {"c": []}})
    assert eb(pattern, {})
    assert eb(pattern, {"d": "scalar"})
    assert not eb(pattern, {"d": {"c": None}})
    assert not eb(pattern, {"d": {"c": 0}})


# ------------------------------------------------------------------------------------------------- cidr


def test_cidr_ipv4() -> None:
    """cidr matches IPv4 strings inside the block, never other strings, IPv6 or numbers."""
    pattern = {"ip": [{"cidr": "10.0.0.0/24"}]}
    assert eb(pattern, {"ip": "10.0.0.0"})
    assert eb(pattern, {"ip": "10.0.0.255"})
    assert not eb(pattern, {"ip": "10.0.1.0"})
    assert not eb(pattern, {"ip": "9.255.255.255"})
    assert not eb(pattern, {"ip": "not an ip"})
    assert not eb(pattern, {"ip": "::ffff:10.0.0.1"})
    assert not eb(pattern, {"ip": 167772161})


def test_cidr_ipv6() -> None:
    """cidr matches IPv6 strings inside the block in any spelling."""
    pattern = {"ip": [{"cidr": "2001:db8::/32"}]}
    assert eb(pattern, {"ip": "2001:db8::1"})
    assert eb(pattern, {"ip": "2001:DB8:FFFF:0:0:0:0:1"})
    assert not eb(pattern, {"ip": "2001:db9::1"})
    assert not eb(pattern, {"ip": "10.0.0.1"})


def test_cidr_with_host_bits_means_its_network() -> None:
    """Like event-ruler (aws/event-ruler#89), an operand with host bits set means its network: 10.0.0.7/24 is
    10.0.0.0/24, for IPv4 and IPv6 alike."""
    pattern = {"ip": [{"cidr": "10.0.0.7/24"}]}
    for inside in ("10.0.0.0", "10.0.0.1", "10.0.0.7", "10.0.0.200", "10.0.0.255"):
        assert eb(pattern, {"ip": inside}), inside
    for outside in ("9.255.255.255", "10.0.1.0"):
        assert not eb(pattern, {"ip": outside}), outside
    v6 = {"ip": [{"cidr": "2001:db8::ff/120"}]}
    assert eb(v6, {"ip": "2001:db8::1"}) and eb(v6, {"ip": "2001:db8::ff"})
    assert not eb(v6, {"ip": "2001:db8::100"})


# -------------------------------------------------------------------------------------------------- $or


def test_or_top_level() -> None:
    """$or matches when any branch matches, AND-ed with the fields beside it."""
    pattern = {
        "source": ["aws.cloudwatch"],
        "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}],
    }
    assert eb(pattern, {"source": "aws.cloudwatch", "metricName": "CPUUtilization"})
    assert eb(pattern, {"source": "aws.cloudwatch", "namespace": "AWS/EC2"})
    assert not eb(pattern, {"source": "aws.cloudwatch", "namespace": "AWS/ES"})
    assert not eb(pattern, {"source": "aws.s3", "metricName": "CPUUtilization"})


def test_or_nested_and_parallel() -> None:
    """$or inside an object, $or inside a $or branch, and two parallel $or all combine correctly."""
    pattern = {
        "$or": [{"a": ["1"]}, {"b": ["1"]}],
        "detail": {
            "$or": [
                {"c": ["1"]},
                {"d": ["1"], "$or": [{"e": ["1"]}, {"f": [{"numeric": [">", 5]}]}]},
            ]
        },
    }
    assert eb(pattern, {"a": "1", "detail": {"c": "1"}})
    assert eb(pattern, {"b": "1", "detail": {"d": "1", "f": 6}})
    assert not eb(pattern, {"b": "1", "detail": {"d": "1", "f": 5}})
    assert not eb(pattern, {"b": "1", "detail": {"e": "1"}})
    assert not eb(pattern, {"detail": {"c": "1"}})


# ------------------------------------------------------------------------------------------- structure


def test_empty_pattern_matches_everything() -> None:
    """The empty pattern {} matches every event."""
    assert eb({}, {})
    assert eb({}, {"anything": [1, 2]})


def test_nested_objects_follow_the_event_structure() -> None:
    """A pattern object steps into the same-named event object; a scalar there does not match it."""
    pattern = {"detail": {"state": {"status": ["running"]}}}
    assert eb(pattern, {"detail": {"state": {"status": "running"}}})
    assert not eb(pattern, {"detail": {"state": "running"}})
    assert not eb(pattern, {"detail": {"status": "running"}})


def test_event_array_leaf_matches_if_any_element_matches() -> None:
    """When the event value is an array, the leaf matches if any element matches (nested arrays too)."""
    pattern = {"resources": ["arn:b"]}
    assert eb(pattern, {"resources": ["arn:a", "arn:b"]})
    assert eb(pattern, {"resources": [["arn:a"], ["arn:b"]]})
    assert not eb(pattern, {"resources": ["arn:a"]})
    assert not eb(pattern, {"resources": []})


def test_array_of_objects_requires_consistency_within_one_element() -> None:
    """Fields under an array of objects must all match inside the same element (event-ruler consistency)."""
    event = {
        "employees": [
            {"first": "John", "last": "Doe"},
            {"first": "Anna", "last": "Smith"},
            {"first": "Peter", "last": "Jones"},
        ]
    }
    assert eb({"employees": {"first": ["Anna"]}}, event)
    assert eb({"employees": {"first": ["Anna"], "last": ["Smith"]}}, event)
    assert not eb({"employees": {"first": ["Anna"], "last": ["Jones"]}}, event)
    nested = {
        "employees": [
            [{"first": "John", "last": "Doe"}, {"first": "Anna", "last": "Smith"}],
            [{"first": "Peter", "last": "Jones"}],
        ]
    }
    assert eb({"employees": {"first": ["Peter"], "last": ["Jones"]}}, nested)
    assert not eb({"employees": {"first": ["John"], "last": ["Jones"]}}, nested)


def test_or_branches_keep_array_consistency() -> None:
    """$or branches are expanded into whole alternatives, so consistency also holds across a branch."""
    event = {"emp": [{"first": "Anna", "last": "Smith"}, {"first": "Peter", "last": "Jones"}]}
    pattern = {"emp": {"first": ["Anna"]}, "$or": [{"emp": {"last": ["Jones"]}}, {"x": ["y"]}]}
    assert not eb(pattern, event)
    pattern_ok = {"emp": {"first": ["Anna"]}, "$or": [{"emp": {"last": ["Smith"]}}, {"x": ["y"]}]}
    assert eb(pattern_ok, event)


def test_exists_false_inside_array_elements() -> None:
    """exists: false under an array of objects matches when some element lacks the field."""
    pattern = {"items": {"id": ["a"], "deleted": [{"exists": False}]}}
    assert eb(pattern, {"items": [{"id": "a", "deleted": True}, {"id": "a"}]})
    assert not eb(pattern, {"items": [{"id": "a", "deleted": True}, {"id": "b"}]})


def test_raw_sagemaker_event_pattern() -> None:
    """A classic EventBridge rule matches the raw SageMaker event as published on the bus."""
    pattern = {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Training Job State Change"],
        "resources": [{"wildcard": "arn:aws:sagemaker:*:training-job/*"}],
        "detail": {
            "TrainingJobStatus": ["Completed"],
            "ResourceConfig": {"InstanceCount": [{"numeric": [">=", 2]}]},
            "InputDataConfig": {"ChannelName": ["Train"]},
        },
    }
    assert eb(pattern, RAW_SAGEMAKER)
    assert not eb({**pattern, "detail": {"TrainingJobStatus": ["Failed"]}}, RAW_SAGEMAKER)


def test_leaf_mixing_operators_is_an_or() -> None:
    """Values and operators in one leaf array are alternatives: any of them may match."""
    pattern = {"v": ["a", {"prefix": "x-"}, {"numeric": [">", 10]}, {"exists": False}]}
    assert eb(pattern, {"v": "a"})
    assert eb(pattern, {"v": "x-1"})
    assert eb(pattern, {"v": 11})
    assert eb(pattern, {})
    assert not eb(pattern, {"v": "b"})
    assert not eb(pattern, {"v": 10})


def test_dotted_field_names_in_patterns_are_nested_paths() -> None:
    """EventBridge joins names with dots: {"state.status": [...]} constrains state -> status."""
    event = {"detail": {"state": {"status": "running"}}}
    assert eb({"detail": {"state.status": ["running"]}}, event)
    assert eb({"detail.state.status": ["running"]}, event)
    assert not eb({"detail": {"state.status": ["stopped"]}}, event)
    assert not eb({"detail": {"state.status": {"status": ["running"]}}}, event)
    assert eb({"detail": {"state.status": ["running"], "state": {"other": [{"exists": False}]}}}, event)


def test_dotted_field_names_in_events_are_nested_paths() -> None:
    """An event field spelt "state.status" is reached by the nested pattern state -> status."""
    assert eb({"detail": {"state": {"status": ["running"]}}}, {"detail": {"state.status": "running"}})
    assert not eb(
        {"detail": {"state": {"status": ["running"]}}}, {"detail": {"state.status": {"status": "running"}}}
    )
    assert eb({"detail": {"state": {"status": [{"exists": False}]}}}, {"detail": {"state.other": 1}})
    assert not eb({"detail": {"state": {"status": [{"exists": False}]}}}, {"detail": {"state.status": None}})


def test_exists_false_or_anything_but_under_a_missing_parent() -> None:
    """[anything-but X, exists false] under a missing parent object matches through exists: false."""
    pattern = {
        "dynamodb": {"NewImage": {"homemade": {"S": [{"anything-but": ["roses"]}, {"exists": False}]}}}
    }
    assert eb(pattern, {"dynamodb": {"NewImage": {"purchased": {"N": "789"}}}})
    assert eb(pattern, {"dynamodb": {"NewImage": {"homemade": {"N": "789"}}}})
    assert eb(pattern, {"dynamodb": {"NewImage": {"homemade": {"S": "tulips"}}}})
    assert not eb(pattern, {"dynamodb": {"NewImage": {"homemade": {"S": "roses"}}}})


def test_wildcard_matching_does_not_backtrack() -> None:
    """A wildcard with many stars does not backtrack catastrophically on a long non-matching value."""
    pattern = {"v": [{"wildcard": "*a*a*a*a*a*a*a*a*a*b"}]}
    started = time.perf_counter()
    assert not eb(pattern, {"v": "a" * 20000})
    assert eb(pattern, {"v": "a" * 20000 + "b"})
    assert time.perf_counter() - started < 1.0
