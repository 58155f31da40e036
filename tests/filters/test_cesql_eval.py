"""CESQL evaluation beyond the case files: the filter predicate, error reporting to the hook, the LIKE matcher
against a reference, bounds on what an expression can build, and how event values are seen."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.filters.cesql import (
    FUNCTION_EVALUATION,
    GENERIC,
    MISSING_ATTRIBUTE,
    CesqlFilter,
    compile_expression,
)
from bridge.filters.cesql.functions import MAX_STRING
from bridge.filters.cesql.like import compile_like
from tests.filters.helpers import ALL_CANONICAL, AZUREML_MODEL_REGISTERED, SAGEMAKER_TRAINING_FAILED


def _filter(text: str) -> CesqlFilter:
    return CesqlFilter({"cesql": text})


def test_a_filter_passes_only_true_without_error() -> None:
    """Spec 1.2: the event passes when the expression is true; false, a non-Boolean or an error do not pass."""
    event = SAGEMAKER_TRAINING_FAILED
    assert _filter("status = 'failed'").matches(event) is True
    assert _filter("status = 'completed'").matches(event) is False
    assert _filter("status").matches(event) is False  # a String, not a Boolean
    assert _filter("missing = 'x' OR TRUE").matches(event) is False  # the error stops it before TRUE
    assert _filter("EXISTS missing OR TRUE").matches(event) is True


def test_evaluation_errors_reach_the_hook_with_their_kind() -> None:
    """Each evaluation that ends in an error calls the hook once with the error kind; a clean one never does."""
    seen: list[str] = []
    flt = _filter("INT(subject) > 3 OR LEFT(subject, -1) = 'x'").with_error_hook(seen.append)
    assert flt.matches({"subject": "7"}) is True
    assert seen == []
    assert flt.matches({"subject": "abc"}) is False
    assert flt.matches({}) is False
    assert flt.matches({"subject": "1"}) is False
    assert seen == ["cast", MISSING_ATTRIBUTE, FUNCTION_EVALUATION]


def test_the_hook_is_per_copy() -> None:
    """with_error_hook gives a twin sharing the compiled expression; the original keeps counting nothing."""
    seen: list[str] = []
    flt = _filter("x = 1")
    twin = flt.with_error_hook(seen.append)
    assert twin.expression is flt.expression and twin.spec == flt.spec
    flt.matches({})
    twin.matches({})
    assert seen == [MISSING_ATTRIBUTE]


class _Exploding(Mapping[str, Any]):
    """An event whose every read raises: stands for a defect inside the evaluation."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_an_unexpected_exception_is_a_generic_error_never_raised() -> None:
    """A failure that is no CESQL error (a defect, a hostile mapping) is reported as GenericError, not raised."""
    seen: list[str] = []
    flt = _filter("status = 'failed'").with_error_hook(seen.append)
    assert flt.matches(_Exploding()) is False
    assert seen == [GENERIC]
    assert compile_expression("status").evaluate(_Exploding()) == (False, GENERIC)


def test_evaluation_never_changes_the_event() -> None:
    """An expression reads the event and leaves it as it was (spec 1: MUST NOT mutate the input)."""
    event = copy.deepcopy(AZUREML_MODEL_REGISTERED)
    before = copy.deepcopy(event)
    for text in ["CONCAT(subject, type) = 'x'", "LOWER(platform) IN ('azureml')", "EXISTS data", "data = 1",
                 "SUBSTRING(id, 2) LIKE '%'", "status = 'x'"]:
        compile_expression(text).evaluate(event)
    assert event == before


def test_every_canonical_example_event_is_readable() -> None:
    """Every attribute of the canonical example events reads as itself (a String), data excepted."""
    for event in ALL_CANONICAL.values():
        for name, value in event.items():
            got = compile_expression(name).evaluate(event)
            assert got == ((False, MISSING_ATTRIBUTE) if name == "data" else (value, None)), name


def test_concat_is_bounded() -> None:
    """CONCAT cannot build strings beyond MAX_STRING characters (nested CONCATs of an attribute would otherwise
    grow with every level): past it, a FunctionEvaluation error."""
    text = "x" * (MAX_STRING // 2)
    assert compile_expression("LENGTH(CONCAT(t, t))").evaluate({"t": text}) == (MAX_STRING, None)
    nested = "CONCAT(t, t)"
    for _ in range(50):
        nested = f"CONCAT({nested}, t)"
    assert compile_expression(f"LENGTH({nested})").evaluate({"t": text}) == (0, FUNCTION_EVALUATION)
    assert compile_expression("CONCAT_WS(t, t, t, 'x')").evaluate({"t": text}) == ("", FUNCTION_EVALUATION)


def test_like_does_not_backtrack() -> None:
    """A pattern with many wildcards against a long text that almost matches answers at once (no regular
    expression backtracking: at most one scan per segment)."""
    text = "a" * 200_000
    assert compile_like("%a%a%a%a%a%a%a%a%a%a%b")(text) is False
    assert compile_like("%a_a%a_a%a_a%a_a%b%")(text) is False
    assert compile_like("a%a%a%a%a%a%a%a%a%a")(text) is True


def _reference_like(pattern: str, value: str) -> bool:
    """LIKE through a regular expression: % is .*, _ is ., \\% and \\_ are literal, the rest literal."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.fullmatch("".join(out), value, re.DOTALL) is not None


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="ab%_\\\n", max_size=10), st.text(alphabet="ab%_\\\n", max_size=12))
def test_like_agrees_with_a_regular_expression(pattern: str, value: str) -> None:
    """The segment matcher answers as the obvious regular expression does, on every small pattern and text."""
    assert compile_like(pattern)(value) is _reference_like(pattern, value)


def test_attribute_values_of_other_json_types() -> None:
    """Values that are not CESQL types are Strings (spec 3.2): big integers and floats as JSON numbers, objects
    and arrays as JSON text; a null is an absent attribute."""
    event = {"big": -(2**40), "f": 1.5, "obj": {"k": [1, True]}, "none": None, "flag": False, "n": -2147483648}
    assert compile_expression("big").evaluate(event) == (str(-(2**40)), None)
    assert compile_expression("f").evaluate(event) == ("1.5", None)
    assert compile_expression("obj").evaluate(event) == ('{"k":[1,true]}', None)
    assert compile_expression("none").evaluate(event) == (False, MISSING_ATTRIBUTE)
    assert compile_expression("EXISTS none").evaluate(event) == (False, None)
    assert compile_expression("flag = FALSE AND n = -2147483648").evaluate(event) == (True, None)
    assert compile_expression("big + 1").evaluate(event) == (0, "cast")


def test_fast_paths_follow_the_general_rules() -> None:
    """The specialised forms (attribute = 'text', attribute IN (literals), attribute LIKE) follow the general
    rules when the attribute is not a string: the cast to the literal's type applies, or the error."""
    event = {"b": True, "i": 7, "s": "7"}
    cases = {
        "b = 'true'": (True, None), "b != 'TRUE'": (True, None), "i = '7'": (True, None), "i <> '07'": (True, None),
        "b IN ('true', 'x')": (True, None), "i IN ('07')": (True, None), "i IN ('8', 'x')": (False, "cast"),
        "b IN ('1')": (False, "cast"), "i LIKE '7'": (True, None), "b NOT LIKE 'tr%'": (False, None),
        "x = 'a'": (False, MISSING_ATTRIBUTE), "x IN ('a')": (False, MISSING_ATTRIBUTE),
        "x LIKE 'a'": (False, MISSING_ATTRIBUTE), "s IN (7, 8)": (True, None),
    }
    for text, expected in cases.items():
        assert compile_expression(text).evaluate(event) == expected, text
