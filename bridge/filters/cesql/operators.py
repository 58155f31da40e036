"""The binary operators of CESQL (spec 3.4.2) as compiled closures: logic (short-circuit), comparisons (with the
implicit casts of spec 3.7) and 32-bit integer arithmetic (truncated division, an overflow is a *Math* error).

Each builder takes the compiled operands of one ``Chain`` and returns the chain's closure. Chains of two operands
(``a = b``, ``x AND y``) get a closure of their own; longer ones are folded left to right in a loop, so a chain of
any length costs no Python recursion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from bridge.filters.cesql.errors import MATH, MISSING_ATTRIBUTE, EvalError, Value
from bridge.filters.cesql.nodes import Attribute, Literal, Node
from bridge.filters.cesql.values import INT_MAX, INT_MIN, Type, caster, from_attribute, to_int

__all__ = ["Compiled", "Fn", "arithmetic", "as_type", "comparison", "logic", "missing"]

Fn = Callable[[Mapping[str, Any]], Any]
Compiled = tuple[Fn, Type]
"""A compiled node: its closure over the event and its static type (None: known only at evaluation)."""

EQUALITY: Final = frozenset({"=", "!=", "<>"})


def missing(name: str, origin: object) -> EvalError:
    return EvalError(MISSING_ATTRIBUTE, False, origin, f"the event has no attribute '{name}'")


def as_type(compiled: Compiled, target: type, origin: object, result: Value) -> Fn:
    """The closure of ``compiled`` cast to ``target`` (itself when its static type already is ``target``); a cast
    that fails raises a Cast error carrying ``result`` (the zero value of the operator that casts)."""
    fn, static = compiled
    if static is target:
        return fn
    cast = caster(target)
    return lambda ev: cast(fn(ev), origin, result)


# ------------------------------------------------------------------------------------------------- logic
def logic(ops: Sequence[str], operands: Sequence[Compiled], origin: Node) -> Fn:
    fns = [as_type(c, bool, origin, False) for c in operands]
    if all(op == "AND" for op in ops) or all(op == "OR" for op in ops):
        if len(fns) == 2:
            a, b = fns
            return (lambda ev: a(ev) and b(ev)) if ops[0] == "AND" else (lambda ev: a(ev) or b(ev))
        if len(fns) == 3:
            a, b, c = fns
            return (lambda ev: a(ev) and b(ev) and c(ev)) if ops[0] == "AND" else (lambda ev: a(ev) or b(ev) or c(ev))
    first, steps = fns[0], list(zip(ops, fns[1:], strict=True))

    def fold(ev: Mapping[str, Any]) -> bool:
        acc: bool = first(ev)
        for op, fn in steps:
            if op == "AND":
                if acc:
                    acc = fn(ev)
            elif op == "OR":
                if not acc:
                    acc = fn(ev)
            else:
                acc = acc is not fn(ev)
        return acc

    return fold


# ------------------------------------------------------------------------------------------- comparison
def compare(op: str, x: Value, y: Value, origin: object) -> bool:
    """``x op y`` on values of any types: equality casts ``x`` to the type of ``y``, order compares Integers."""
    if op in EQUALITY:
        if x.__class__ is not y.__class__:
            x = caster(y.__class__)(x, origin, False)
        return (x == y) is (op == "=")
    a, b = to_int(x, origin, False), to_int(y, origin, False)
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _attribute_equals(attribute: Attribute, literal: str, equal: bool, origin: Node) -> Fn:
    """``attribute = 'text'`` (or ``!=``): a dictionary lookup and a string comparison when the value is a
    string, the general rule otherwise."""
    name = attribute.name

    def slow(raw: Any) -> bool:
        if raw is None:
            raise missing(name, attribute)
        return compare("=" if equal else "!=", from_attribute(raw, attribute), literal, origin)

    if equal:
        def equals(ev: Mapping[str, Any]) -> bool:
            raw = ev.get(name)
            return raw == literal if raw.__class__ is str else slow(raw)
        return equals

    def differs(ev: Mapping[str, Any]) -> bool:
        raw = ev.get(name)
        return raw != literal if raw.__class__ is str else slow(raw)
    return differs


def comparison(ops: Sequence[str], nodes: Sequence[Node], operands: Sequence[Compiled], origin: Node) -> Fn:
    """Both operands are evaluated (left first), then cast, then compared."""
    if len(ops) == 1:
        op, (left, _), (right, rt) = ops[0], operands[0], operands[1]
        lnode, rnode = nodes
        if (op in EQUALITY and isinstance(lnode, Attribute) and lnode.name != "data" and isinstance(rnode, Literal)
                and rnode.value.__class__ is str):
            return _attribute_equals(lnode, rnode.value, op == "=", origin)  # type: ignore[arg-type]
        if op in EQUALITY and rt is not None:
            cast, equal = caster(rt), op == "="

            def typed(ev: Mapping[str, Any]) -> bool:
                x, y = left(ev), right(ev)
                if x.__class__ is not rt:
                    x = cast(x, origin, False)
                return (x == y) is equal

            return typed
        return lambda ev: compare(op, left(ev), right(ev), origin)
    return _fold(compare, ops, operands, origin)


def _fold(combine: Callable[[str, Value, Value, object], Value], ops: Sequence[str], operands: Sequence[Compiled],
          origin: Node) -> Fn:
    """A chain of three or more operands, combined left to right in a loop."""
    first, steps = operands[0][0], list(zip(ops, (fn for fn, _ in operands[1:]), strict=True))

    def fold(ev: Mapping[str, Any]) -> Value:
        acc: Value = first(ev)
        for op, fn in steps:
            acc = combine(op, acc, fn(ev), origin)
        return acc

    return fold


# ------------------------------------------------------------------------------------------- arithmetic
def arithmetic_op(op: str, left: Value, right: Value, origin: object) -> int:
    """``left op right`` cast to 32-bit Integers: ``/`` truncates towards 0, ``%`` takes the sign of ``left``;
    dividing by 0 gives 0 and a Math error, so does a result outside 32 bits."""
    x, y = to_int(left, origin, 0), to_int(right, origin, 0)
    if op == "+":
        r = x + y
    elif op == "-":
        r = x - y
    elif op == "*":
        r = x * y
    else:
        if y == 0:
            raise EvalError(MATH, 0, origin, f"{'division' if op == '/' else 'modulo'} by zero")
        q = abs(x) // abs(y) if op == "/" else abs(x) % abs(y)
        r = q if (op == "%" and x >= 0) or (op == "/" and (x < 0) == (y < 0)) else -q
    if INT_MIN <= r <= INT_MAX:
        return r
    raise EvalError(MATH, 0, origin, f"{x} {op} {y} overflows 32 bits")


def arithmetic(ops: Sequence[str], operands: Sequence[Compiled], origin: Node) -> Fn:
    """Both operands are evaluated (left first), then cast to Integer, then combined."""
    if len(operands) == 2:
        (a, _), (b, _), op = operands[0], operands[1], ops[0]
        return lambda ev: arithmetic_op(op, a(ev), b(ev), origin)
    return _fold(arithmetic_op, ops, operands, origin)


def negate(operand: Compiled, origin: Node) -> Fn:
    fn = operand[0]
    return lambda ev: arithmetic_op("-", 0, fn(ev), origin)


def invert(operand: Compiled, origin: Node) -> Fn:
    fn = as_type(operand, bool, origin, False)
    return lambda ev: not fn(ev)

