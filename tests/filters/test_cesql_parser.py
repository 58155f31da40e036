"""The CESQL parser: precedence and associativity as the tree shows them, parse errors with their positions, and
the limits that keep any input away from unbounded recursion."""

from __future__ import annotations

import inspect
import pickle
import sys

import pytest

from bridge.filters.cesql import MAX_DEPTH, MAX_NESTING, CesqlParseError, compile_expression, parse


@pytest.mark.parametrize(("text", "tree"), [
    ("a OR b AND c", "(AND (OR a b) c)"),
    ("a AND b OR c", "(OR (AND a b) c)"),
    ("a XOR b AND c OR d", "(OR (AND (XOR a b) c) d)"),
    ("a = b AND c <> d", "(AND (= a b) (<> c d))"),
    ("1 + 2 * 3 - 4", "(- (+ 1 (* 2 3)) 4)"),
    ("8 / 4 / 2", "(/ (/ 8 4) 2)"),
    ("1 < 2 = TRUE", "(= (< 1 2) TRUE)"),
    ("NOT a = b", "(= (NOT a) b)"),
    ("NOT a LIKE 'x%'", "(LIKE (NOT a) 'x%')"),
    ("-a IN (1, 2)", "(IN (- a) [1 2])"),
    ("a + b LIKE 'x'", "(+ a (LIKE b 'x'))"),
    ("a NOT IN ('x') AND EXISTS b", "(AND (NOT IN a ['x']) (EXISTS b))"),
    ("NOT EXISTS late", "(NOT (EXISTS late))"),
    ("a LIKE 'x' IN (TRUE)", "(IN (LIKE a 'x') [TRUE])"),
    ("- - 5", "(- -5)"),
    ("-(5)", "(- 5)"),
    ("3 - -2", "(- 3 -2)"),
    ("3-2", "(- 3 2)"),
    ("+7 * -1", "(* 7 -1)"),
    ("lower(X) = Y", "(= (LOWER x) y)"),
    ("concat()", "(CONCAT)"),
    ("SUBSTRING (s, 1)", "(SUBSTRING s 1)"),
    ("((((a))))", "a"),
])
def test_precedence_and_associativity(text: str, tree: str) -> None:
    """Spec 3.6: function calls, prefix operators, LIKE/EXISTS/IN, then * / %, + -, comparisons, and AND/OR/XOR
    as one tier, each tier left to right; a sign right before digits belongs to the integer literal."""
    assert repr(parse(text)) == tree


@pytest.mark.parametrize(("text", "position", "words"), [
    ("", 1, "expected a value"),
    ("status = ", 10, "expected a value"),
    ("status = 'failed' AND", 22, "expected a value"),
    ("type = 'x' status = 'y'", 12, "expected an operator or the end"),
    ("(a = 1", 7, "')' to close the '(' at position 1"),
    ("a = 'open", 5, "unterminated string literal"),
    ("a ! b", 3, "'!' must be followed by '='"),
    ("a # b", 3, "unexpected character '#'"),
    ("subject LIKE 5", 14, "LIKE needs a string literal"),
    ("a NOT = b", 3, "NOT after a value must be followed by LIKE or IN"),
    ("x IN 'a'", 6, "'(' and the set of values after IN"),
    ("x IN ('a' 'b')", 11, "expected ',' or ')' in the IN list opened at position 6"),
    ("CONCAT('a' 'b')", 12, "expected ',' or ')' in the arguments opened at position 7"),
    ("EXISTS", 7, "EXISTS needs an attribute name"),
    ("job_name = 'x'", 1, "not an attribute name"),
    ("F2(x)", 1, "not a function name"),
    ("1 + 2147483648", 5, "outside the 32-bit range"),
    ("- 2147483649", 1, "outside the 32-bit range"),
    ("OR", 1, "got the keyword OR"),
])
def test_parse_errors_name_their_position(text: str, position: int, words: str) -> None:
    """A parse error gives the 1-based position of the offending character and says what was expected."""
    with pytest.raises(CesqlParseError) as info:
        parse(text)
    assert (info.value.position, info.value.kind) == (position, "parse")
    assert words in info.value.message
    assert str(info.value) == f"parse error at position {position}: {info.value.message}"


def test_parse_error_pickles() -> None:
    """CesqlParseError survives pickling with its position and message (it crosses process boundaries)."""
    err = CesqlParseError(3, "x")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.position, copy.message) == (3, "x")


def test_a_non_string_expression_is_a_parse_error() -> None:
    """Only text is an expression; anything else is a parse error at position 1, not a TypeError."""
    with pytest.raises(CesqlParseError) as info:
        parse(5)  # type: ignore[arg-type]
    assert info.value.position == 1


@pytest.mark.parametrize("text", [
    "(" * 100_000,
    "(" * 100_000 + "1" + ")" * 100_000,
    "NOT " * 100_000 + "TRUE",
    "-" * 100_000 + "1",
    "ABS(" * 100_000 + "1" + ")" * 100_000,
    "x IN (" * 100_000 + "1" + ")" * 100_000,
    "a LIKE 'b' " + "LIKE 'c' " * 200,
])
def test_deep_inputs_are_parse_errors_not_crashes(text: str) -> None:
    """However deep the input, the parser answers with a parse error (no RecursionError, no hang)."""
    with pytest.raises(CesqlParseError) as info:
        parse(text)
    assert "nested" in info.value.message or "levels" in info.value.message


def test_the_depth_limits_are_exact() -> None:
    """MAX_DEPTH levels of tree and MAX_NESTING levels of parentheses are accepted, one more is refused."""
    assert parse("NOT " * (MAX_DEPTH - 1) + "TRUE").depth == MAX_DEPTH
    with pytest.raises(CesqlParseError):
        parse("NOT " * MAX_DEPTH + "TRUE")
    assert repr(parse("(" * MAX_NESTING + "a" + ")" * MAX_NESTING)) == "a"
    with pytest.raises(CesqlParseError):
        parse("(" * (MAX_NESTING + 1) + "a" + ")" * (MAX_NESTING + 1))


def test_deepest_accepted_expression_evaluates_within_a_small_stack() -> None:
    """The deepest expression the parser accepts compiles and evaluates with room to spare under a recursion
    limit well below Python's default of 1000."""
    text = "(" * (MAX_NESTING - 1) + "NOT " * (MAX_DEPTH - 3) + "(1 = 1)" + ")" * (MAX_NESTING - 1)
    limit = sys.getrecursionlimit()
    depth = len(inspect.stack())
    sys.setrecursionlimit(depth + 600)
    try:
        expression = compile_expression(text)
        assert expression.evaluate({}) == ((MAX_DEPTH - 3) % 2 == 0, None)
    finally:
        sys.setrecursionlimit(limit)


def test_long_chains_are_wide_not_deep() -> None:
    """20,000 operands (twenty times Python's recursion limit) joined by one tier's operators parse into one chain
    and evaluate in a loop."""
    ors = " OR ".join(f"status = 's{i}'" for i in range(20_000))
    tree = parse(ors)
    assert tree.depth == 3
    expression = compile_expression(ors)
    assert expression.evaluate({"status": "s19999"}) == (True, None)
    assert expression.evaluate({"status": "x"}) == (False, None)
    sums = compile_expression(" + ".join(["1"] * 20_000))
    assert sums.evaluate({}) == (20_000, None)
    comparisons = compile_expression(" = ".join(["TRUE"] * 20_001))
    assert comparisons.evaluate({}) == (True, None)


def test_huge_literals_are_fine() -> None:
    """A megabyte string literal and a 100,000-item IN list parse and evaluate."""
    big = "x" * 1_000_000
    assert compile_expression(f"'{big}' = '{big}'").evaluate({}) == (True, None)
    items = ", ".join(f"'v{i}'" for i in range(100_000))
    assert compile_expression(f"a IN ({items})").evaluate({"a": "v77777"}) == (True, None)
