"""Compile a CESQL syntax tree once into closures over the event (a ``Mapping`` of attribute names to values).

Static types decide at compile time which casts are needed at all; the shapes filters are made of become direct
dictionary lookups: ``attr = 'text'`` (``operators``), ``attr IN ('a', 'b')`` (a frozen set),
``attr LIKE 'prefix%'`` (``str.startswith``), ``EXISTS attr``. Errors travel as ``EvalError`` (fail fast, spec
4.1); ``Expression.evaluate`` turns them into the spec's (value, error) result.

What an expression sees of an event (spec 3.2): every top-level key except ``data`` (the payload is not
addressable in CESQL v1), a ``null`` value being absent. Booleans, 32-bit integers and strings are themselves,
anything else a String (``values.from_attribute``). ``EXISTS`` of a REQUIRED attribute (``specversion``, ``id``,
``source``, ``type``) is always true, as the spec demands of a valid event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from bridge.filters.cesql.errors import CAST, GENERIC, MISSING_ATTRIBUTE, MISSING_FUNCTION, EvalError, Value
from bridge.filters.cesql.functions import Function, names, resolve
from bridge.filters.cesql.like import compile_like
from bridge.filters.cesql.nodes import (
    ADDITIVE,
    COMPARISON,
    LOGICAL,
    Attribute,
    Call,
    Chain,
    Exists,
    In,
    Like,
    Literal,
    Node,
    Unary,
)
from bridge.filters.cesql.operators import (
    Compiled,
    Fn,
    arithmetic,
    as_type,
    comparison,
    invert,
    logic,
    missing,
    negate,
)
from bridge.filters.cesql.values import Type, caster, from_attribute, to_str, zero

__all__ = ["REQUIRED", "UNADDRESSABLE", "Expression", "compile_tree", "static_type"]

REQUIRED: Final = frozenset({"specversion", "id", "source", "type"})
UNADDRESSABLE: Final = frozenset({"data"})


class Expression:
    """A compiled expression: ``evaluate(event)`` gives ``(value, error kind or None)``."""

    __slots__ = ("fn", "root", "type", "zero")

    def __init__(self, root: Node) -> None:
        self.root = root
        self.fn, self.type = compile_tree(root)
        self.zero = zero(self.type)

    def evaluate(self, event: Mapping[str, Any]) -> tuple[Value, str | None]:
        """The value and the error kind of the evaluation (fail fast mode): the value of the operator or function
        where the error arose when that is the whole expression, else the zero value of the expression's type."""
        value, kind, _ = self.explain(event)
        return value, kind

    def explain(self, event: Mapping[str, Any]) -> tuple[Value, str | None, str | None]:
        """``evaluate`` plus what went wrong, in words (None without error)."""
        try:
            return self.fn(event), None, None
        except EvalError as exc:
            return (exc.value if exc.origin is self.root else self.zero), exc.kind, exc.detail
        except Exception as exc:  # a defect, never an expected outcome: reported, not raised (tests check it is absent)
            return self.zero, GENERIC, f"{type(exc).__name__}: {exc}"


def static_type(node: Node) -> Type:
    """The type ``node`` evaluates to, when known before evaluation."""
    if isinstance(node, Literal):
        return type(node.value)
    if isinstance(node, Attribute):
        return None
    if isinstance(node, Unary):
        return bool if node.op == "NOT" else int
    if isinstance(node, Chain):
        return int if node.level <= ADDITIVE else bool
    if isinstance(node, Call):
        definition = resolve(node.name, len(node.args))
        return definition.returns if definition is not None else bool
    return bool  # Exists, Like, In


def compile_tree(node: Node) -> Compiled:
    """The closure of ``node`` and its static type (recursion is bounded by ``parser.MAX_DEPTH``)."""
    if isinstance(node, Literal):
        value = node.value
        return (lambda ev: value), type(value)
    if isinstance(node, Attribute):
        return _attribute(node), None
    if isinstance(node, Exists):
        return _exists(node.name), bool
    if isinstance(node, Unary):
        operand = compile_tree(node.operand)
        return (invert(operand, node), bool) if node.op == "NOT" else (negate(operand, node), int)
    if isinstance(node, Chain):
        return _chain(node), static_type(node)
    if isinstance(node, Like):
        return _like(node), bool
    if isinstance(node, In):
        return _in(node), bool
    if isinstance(node, Call):
        return _call(node), static_type(node)
    raise TypeError(f"not a CESQL node: {node!r}")


def _attribute(node: Attribute) -> Fn:
    name = node.name
    if name in UNADDRESSABLE:
        def payload(ev: Mapping[str, Any]) -> Value:
            raise EvalError(MISSING_ATTRIBUTE, False, node, f"'{name}' is the payload, which CESQL cannot address")
        return payload

    def attribute(ev: Mapping[str, Any]) -> Value:
        raw = ev.get(name)
        if raw.__class__ is str:
            return raw  # type: ignore[no-any-return]
        if raw is None:
            raise missing(name, node)
        return from_attribute(raw, node)

    return attribute


def _exists(name: str) -> Fn:
    if name in REQUIRED:
        return lambda ev: True
    if name in UNADDRESSABLE:
        return lambda ev: False
    return lambda ev: ev.get(name) is not None


def _chain(node: Chain) -> Fn:
    nodes = [node.first, *(n for _, n in node.rest)]
    ops = [op for op, _ in node.rest]
    operands = [compile_tree(n) for n in nodes]
    if node.level == LOGICAL:
        return logic(ops, operands, node)
    if node.level == COMPARISON:
        return comparison(ops, nodes, operands, node)
    return arithmetic(ops, operands, node)


def _string_source(operand: Node) -> Fn:
    """The operand of LIKE as a String (a cast to String always succeeds)."""
    fn, static = compile_tree(operand)
    if static is str:
        return fn
    return lambda ev: to_str(fn(ev))


def _like(node: Like) -> Fn:
    match, operand, negated = compile_like(node.pattern), node.operand, node.negated
    if isinstance(operand, Attribute) and operand.name not in UNADDRESSABLE:
        name = operand.name

        def like_attribute(ev: Mapping[str, Any]) -> bool:
            raw = ev.get(name)
            if raw.__class__ is not str:
                if raw is None:
                    raise missing(name, operand)
                raw = to_str(from_attribute(raw, operand))
            return match(raw) is not negated

        return like_attribute
    source = _string_source(operand)
    return lambda ev: match(source(ev)) is not negated


_CAST_FAILED: Final = object()


def _literal_tables(items: Sequence[Literal], origin: Node) -> dict[type, tuple[frozenset[Value] | None, list[Any]]]:
    """For each type the left operand may have: the items cast to it, as a set when every cast succeeds, and in
    order (a failed cast marked) for the sequential rule: the first item equal to the left operand wins, a
    failed cast met before it is a Cast error."""
    tables: dict[type, tuple[frozenset[Value] | None, list[Any]]] = {}
    for target in (bool, int, str):
        cast, ordered = caster(target), []
        for item in items:
            try:
                ordered.append(cast(item.value, origin, False))
            except EvalError:
                ordered.append(_CAST_FAILED)
        tables[target] = (None if _CAST_FAILED in ordered else frozenset(ordered), ordered)
    return tables


def _in(node: In) -> Fn:
    negated, operand = node.negated, node.operand
    if all(isinstance(i, Literal) for i in node.items):
        tables = _literal_tables(node.items, node)  # type: ignore[arg-type]
        strings = tables[str][0]
        assert strings is not None  # every cast to String succeeds
        if isinstance(operand, Attribute) and operand.name not in UNADDRESSABLE:
            name, general = operand.name, _in_literals(node, tables, compile_tree(operand)[0])

            def in_attribute(ev: Mapping[str, Any]) -> bool:
                raw = ev.get(name)
                if raw.__class__ is str:
                    return (raw in strings) is not negated
                answer: bool = general(ev)
                return answer

            return in_attribute
        return _in_literals(node, tables, compile_tree(operand)[0])
    left, items = compile_tree(operand)[0], [compile_tree(i)[0] for i in node.items]

    def in_items(ev: Mapping[str, Any]) -> bool:
        x = left(ev)
        cast = caster(x.__class__)
        for item in items:
            y = item(ev)
            if y.__class__ is not x.__class__:
                y = cast(y, node, False)
            if x == y:
                return not negated
        return negated

    return in_items


def _in_literals(node: In, tables: dict[type, tuple[frozenset[Value] | None, list[Any]]], left: Fn) -> Fn:
    negated = node.negated

    def in_literals(ev: Mapping[str, Any]) -> bool:
        x = left(ev)
        members, ordered = tables[x.__class__]
        if members is not None:
            return (x in members) is not negated
        for y in ordered:
            if y is _CAST_FAILED:
                raise EvalError(CAST, False, node, f"an IN item cannot be cast to the type of {x!r}")
            if x == y:
                return not negated
        return negated

    return in_literals


def _call(node: Call) -> Fn:
    definition = resolve(node.name, len(node.args))
    if definition is None:
        detail = f"no function {node.name} taking {len(node.args)} argument(s); built-ins: {', '.join(names())}"

        def missing_function(ev: Mapping[str, Any]) -> Value:
            raise EvalError(MISSING_FUNCTION, False, node, detail)

        return missing_function
    args = [_argument(definition, i, compile_tree(a), node) for i, a in enumerate(node.args)]
    impl = definition.impl

    def invoke(ev: Mapping[str, Any]) -> Value:
        try:
            return impl(*[a(ev) for a in args])  # type: ignore[no-any-return]
        except EvalError as exc:
            if exc.origin is None:  # raised by the function itself
                exc.origin = node
            raise

    return invoke


def _argument(definition: Function, index: int, compiled: Compiled, node: Call) -> Fn:
    target = definition.param_type(index)
    if target is None:
        return compiled[0]
    return as_type(compiled, target, node, zero(definition.returns))
