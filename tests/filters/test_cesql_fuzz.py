"""Fuzzing the CESQL parser and evaluator with hypothesis: any text gives a parse error or a value, never another
exception, a hang or a recursion error; expressions built from the grammar parse into the tree they were built
as, and evaluate to a value of their static type."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.filters.cesql import GENERIC, RUNTIME_KINDS, CesqlFilter, CesqlParseError, compile_expression, parse
from bridge.filters.cesql.compiler import static_type
from tests.filters.helpers import ALL_CANONICAL

pytestmark = pytest.mark.slow  # hypothesis runs over the CESQL grammar

NAMES = ["type", "status", "subject", "platform", "late", "n", "b", "s", "missing", "data", "id"]
TOKENS = ["(", ")", ",", "'a'", '"b"', "'", '"', "\\", "1", "-1", "+", "-", "*", "/", "%", "=", "!=", "<>", "<",
          "<=", ">", ">=", "!", "AND", "or", "XoR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "false", "status",
          "type", "ABS", "CONCAT", "concat_ws", "SUBSTRING", "int", "IS_BOOL", "nope", "'%x_'", "2147483648", "0",
          "_", "a_b", "é", "\t", "\n", " "]

EVENTS: list[dict[str, Any]] = [
    *ALL_CANONICAL.values(),
    {},
    {"n": 7, "b": True, "s": "7", "late": True, "status": "FALSE", "type": "x", "subject": "", "id": "1"},
    {"n": 2**40, "b": "maybe", "s": {"k": [1]}, "status": None, "platform": 1.5, "type": 0},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**45), 2**45) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=5,
)
events = st.dictionaries(st.sampled_from(NAMES), json_values, max_size=len(NAMES))


def _check(text: str, extra: list[dict[str, Any]] | None = None) -> None:
    """Parse ``text``: a CesqlParseError, or an expression whose evaluation on every event gives a CESQL value
    of the expression's static type and a known error kind (never GenericError, which would be a defect)."""
    try:
        expression = compile_expression(text)
    except CesqlParseError as exc:
        assert 1 <= exc.position <= len(text) + 1
        return
    expected = static_type(expression.root)
    flt = CesqlFilter({"cesql": text}, _expression=expression)
    for event in EVENTS + (extra or []):
        value, kind = expression.evaluate(event)
        assert type(value) in (bool, int, str), (text, value)
        assert expected is None or type(value) is expected, (text, value, kind)
        assert kind is None or (kind in RUNTIME_KINDS and kind != GENERIC), (text, kind)
        assert flt.matches(event) is (value is True and kind is None)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_random_text(text: str) -> None:
    """Arbitrary text is a parse error or a value."""
    _check(text)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=30), st.sampled_from([" ", "", "\t"]), events)
def test_token_soup(tokens: list[str], sep: str, event: dict[str, Any]) -> None:
    """Random sequences of CESQL tokens (and near misses) are parse errors or values, on any event."""
    _check(sep.join(tokens), [event])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20_000), st.sampled_from(["(", "NOT ", "-", "ABS(", "x IN (", "CONCAT(1, ", "- -", "((NOT "]),
       st.booleans())
def test_deep_nesting(depth: int, opener: str, closed: bool) -> None:
    """Deep nesting of parentheses, prefix operators, calls and IN lists gives a parse error or a value."""
    closer = ")" * (depth * opener.count("(")) if closed else ""
    _check(opener * depth + "1" + closer)


# --------------------------------------------------------------------- expressions built from the grammar
def _quote(value: str, quote: str) -> str:
    return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote if "\\" not in value else (
        quote + value.replace(quote, "\\" + quote) + quote)


safe_text = st.text(alphabet=st.characters(blacklist_characters="\\", blacklist_categories=("Cs",)), max_size=6)
literals = st.one_of(
    st.booleans().map(lambda b: ("TRUE" if b else "false", "TRUE" if b else "FALSE")),
    st.integers(0, 2**31 - 1).map(lambda i: (str(i), str(i))),
    st.tuples(safe_text, st.sampled_from("'\"")).map(lambda t: (_quote(t[0], t[1]), repr(t[0]))),
)
attributes = st.sampled_from(NAMES).map(lambda n: (n.upper() if n == "s" else n, n))


def _extend(inner: st.SearchStrategy[tuple[str, str]]) -> st.SearchStrategy[tuple[str, str]]:
    ops = ["*", "/", "%", "+", "-", "=", "!=", "<>", "<", "<=", ">", ">=", "AND", "OR", "XOR"]
    binary = st.tuples(st.sampled_from(ops), inner, inner).map(
        lambda t: (f"({t[1][0]} {t[0]} {t[2][0]})", f"({t[0]} {t[1][1]} {t[2][1]})"))
    unary = st.tuples(st.sampled_from(["NOT", "-"]), inner).map(
        lambda t: (f"({t[0]} ({t[1][0]}))", f"({t[0]} {t[1][1]})"))
    like = st.tuples(inner, safe_text, st.booleans()).map(
        lambda t: (f"({t[0][0]} {'NOT ' if t[2] else ''}LIKE {_quote(t[1], chr(39))})",
                   f"({'NOT LIKE' if t[2] else 'LIKE'} {t[0][1]} {t[1]!r})"))
    members = st.lists(inner, min_size=1, max_size=3)
    in_ = st.tuples(inner, members, st.booleans()).map(
        lambda t: (f"({t[0][0]} {'NOT ' if t[2] else ''}IN ({', '.join(m[0] for m in t[1])}))",
                   f"({'NOT IN' if t[2] else 'IN'} {t[0][1]} [{' '.join(m[1] for m in t[1])}])"))
    functions = ["LENGTH", "CONCAT", "CONCAT_WS", "lower", "Upper", "TRIM", "LEFT", "RIGHT", "SUBSTRING", "ABS",
                 "INT", "BOOL", "STRING", "IS_INT", "IS_BOOL", "NOPE"]
    call = st.tuples(st.sampled_from(functions), st.lists(inner, max_size=3)).map(
        lambda t: (f"{t[0]}({', '.join(a[0] for a in t[1])})",
                   f"({t[0].upper()}{''.join(' ' + a[1] for a in t[1])})"))
    exists = st.sampled_from(NAMES).map(lambda n: (f"(EXISTS {n})", f"(EXISTS {n})"))
    return binary | unary | like | in_ | call | exists


grammar = st.recursive(literals | attributes, _extend, max_leaves=12)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grammar, events)
def test_grammar_expressions_parse_into_their_tree(built: tuple[str, str], event: dict[str, Any]) -> None:
    """An expression built from the grammar (fully parenthesised) parses into exactly the tree it was built as,
    and evaluates to a value of its static type on any event."""
    text, tree = built
    assert repr(parse(text)) == tree
    _check(text, [event])
