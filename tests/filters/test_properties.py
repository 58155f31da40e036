"""Property tests: relations between operators that must hold for every value, checked with hypothesis."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.filters import compile_filter

# Strings without ':' / '.' so that no value is an IP literal (IP literals get address-level equality).
words = st.text(alphabet="abcXYZ-_ /*", max_size=8)
ints = st.integers(min_value=-(10**12), max_value=10**12)
floats = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
scalars = st.one_of(words, ints, floats, st.booleans(), st.none())
bounded = st.one_of(
    st.integers(min_value=-5 * 10**9, max_value=5 * 10**9),
    st.decimals(
        min_value=-5 * 10**9, max_value=5 * 10**9, places=6, allow_nan=False, allow_infinity=False
    ).map(lambda d: float(d) if Decimal(repr(float(d))) == d else int(d)),
)


def _decimal(v: Any) -> Decimal:
    return Decimal(repr(v)) if isinstance(v, float) else Decimal(v)


@settings(max_examples=300, deadline=None)
@given(excluded=st.one_of(words, bounded), value=scalars)
def test_anything_but_is_the_negation_of_exact_for_present_scalars(excluded: Any, value: Any) -> None:
    """For a present scalar field, {"anything-but": X} matches exactly when [X] does not."""
    exact = compile_filter({"f": [excluded]}, "eventbridge")
    anything_but = compile_filter({"f": [{"anything-but": excluded}]}, "eventbridge")
    event = {"f": value}
    assert anything_but.matches(event) is (not exact.matches(event))


@settings(max_examples=300, deadline=None)
@given(bound=bounded, value=st.one_of(ints, floats), op=st.sampled_from(["<", "<=", ">", ">=", "="]))
def test_numeric_agrees_with_decimal_arithmetic(bound: Any, value: Any, op: str) -> None:
    """numeric comparisons give the result of comparing the written decimals exactly."""
    f = compile_filter({"v": [{"numeric": [op, bound]}]}, "eventbridge")
    a, b = _decimal(value), _decimal(bound)
    expected = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "=": a == b}[op]
    assert f.matches({"v": value}) is expected


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.text(alphabet="ab", max_size=3), min_size=1, max_size=4),
    value=st.text(alphabet="ab*", max_size=8),
)
def test_wildcard_agrees_with_a_regular_expression(parts: list[str], value: str) -> None:
    """The wildcard fast paths agree with the plain regular-expression reading of the pattern."""
    pattern = "*".join(parts)
    assume("**" not in pattern)  # consecutive wildcards are invalid (tested elsewhere)
    f = compile_filter({"v": [{"wildcard": pattern}]}, "eventbridge")
    regex = ".*".join(re.escape(p) for p in parts)
    assert f.matches({"v": value}) is (re.fullmatch(regex, value, re.DOTALL) is not None)


@settings(max_examples=200, deadline=None)
@given(
    a=st.sampled_from(["x", "y"]),
    b=st.sampled_from(["1", "2"]),
    event=st.fixed_dictionaries(
        {}, optional={"p": st.sampled_from(["x", "y", "z"]), "q": st.sampled_from(["1", "2", "3"])}
    ),
)
def test_or_is_the_disjunction_of_its_branches(a: str, b: str, event: dict[str, Any]) -> None:
    """On flat events, {"$or": [P1, P2]} matches exactly when P1 or P2 matches."""
    p1 = {"p": [a]}
    p2 = {"q": [b]}
    both = compile_filter({"$or": [p1, p2]}, "eventbridge").matches(event)
    assert both is (compile_filter(p1).matches(event) or compile_filter(p2).matches(event))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(words, min_size=1, max_size=4), value=st.one_of(words, ints, st.none()))
def test_eventgrid_string_in_and_not_in_are_complements(values: list[str], value: Any) -> None:
    """For a present non-array value, StringNotIn matches exactly when StringIn does not."""

    def spec(op: str) -> dict[str, Any]:
        return {"advancedFilters": [{"operatorType": op, "key": "data.k", "values": values}]}

    event = {"data": {"k": value}}
    assert compile_filter(spec("StringNotIn")).matches(event) is (
        not compile_filter(spec("StringIn")).matches(event)
    )


@settings(max_examples=300, deadline=None)
@given(low=bounded, width=bounded, value=st.one_of(ints, floats))
def test_eventgrid_number_in_range_matches_decimal_bounds(low: Any, width: Any, value: Any) -> None:
    """NumberInRange is inclusive on both ends and NumberNotInRange is its negation for numbers."""
    high_dec = _decimal(low) + abs(_decimal(width))
    high = int(high_dec) if high_dec == high_dec.to_integral_value() else float(high_dec)
    assume(_decimal(high) == high_dec)

    def spec(op: str) -> dict[str, Any]:
        return {"advancedFilters": [{"operatorType": op, "key": "data.k", "values": [[low, high]]}]}

    event = {"data": {"k": value}}
    inside = _decimal(low) <= _decimal(value) <= high_dec
    assert compile_filter(spec("NumberInRange")).matches(event) is inside
    assert compile_filter(spec("NumberNotInRange")).matches(event) is (not inside)
