"""Exact numeric comparison of JSON numbers, shared by both dialects.

JSON numbers reach us as Python ``int`` or ``float`` (the JSON parser already chose). A float is read as
the decimal it was written as, i.e. its shortest round-trip ``repr`` (``0.1`` is 0.1, not
0.1000000000000000055511), so ``0.1 + 0.2`` (``0.30000000000000004``) is not ``0.3``, while ``1e2``
equals ``100``.

Fast paths keep ``Decimal`` off the hot path: an ``int`` event value compares directly with an integral bound
(Python compares ``int`` with ``Decimal`` exactly too), and a ``float`` compares as a float with a bound whose
decimal form is itself the shortest repr of a double. Shortest-repr is strictly monotonic over finite doubles,
so both fast paths give exactly the result of the decimal comparison.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = [
    "Bound",
    "compare_fn",
    "is_number",
    "number_key",
    "to_decimal",
]

_FAST_FLOAT_LIMIT: Final = 2.0**53

Cmp = Callable[[Any, Any], bool]

OPS: Final[dict[str, Cmp]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
}


def is_number(value: object) -> bool:
    """A JSON number: ``int`` or ``float`` (finite) or ``Decimal``, never ``bool``."""
    t = type(value)
    if t is int:
        return True
    if t is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    if t is bool:
        return False
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return not (isinstance(value, Decimal) and not value.is_finite())
    return isinstance(value, float) and math.isfinite(value)


def to_decimal(value: Any) -> Decimal:
    """The decimal a JSON number was written as (floats through their shortest repr)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(int(value))


class Bound:
    """A numeric constant of a filter, prepared for exact comparison with int, float and Decimal values."""

    __slots__ = ("dec", "for_float", "for_int")

    def __init__(self, value: Any) -> None:
        self.dec: Decimal = to_decimal(value)
        integral = self.dec == self.dec.to_integral_value()
        # for_int: what an int event value is compared with (int is exact and fastest).
        self.for_int: int | Decimal = int(self.dec) if integral else self.dec
        # for_float: a float with the same decimal identity, or None when no double has it.
        as_float = float(self.dec)
        self.for_float: float | None = None
        if math.isfinite(as_float):
            try:
                if Decimal(repr(as_float)) == self.dec:
                    self.for_float = as_float
            except InvalidOperation:  # pragma: no cover - repr of a finite float is always valid
                self.for_float = None


def compare_fn(op: str, bound: Bound) -> Callable[[Any], bool]:
    """A predicate ``v -> v <op> bound`` for numeric ``v``; non-numbers (and bools) give False."""
    cmp = OPS[op]
    b_int = bound.for_int
    b_float = bound.for_float
    b_dec = bound.dec

    def check(v: Any) -> bool:
        t = type(v)
        if t is int:
            return cmp(v, b_int)
        if t is float:
            if v != v or v in (math.inf, -math.inf):
                return False
            if b_float is not None:
                return cmp(v, b_float)
            return cmp(Decimal(repr(v)), b_dec)
        if t is bool or not is_number(v):
            return False
        return cmp(to_decimal(v), b_dec)

    return check


def number_key(v: Any) -> object:
    """A hashable key under which equal JSON numbers collide: ints (and integral values) as ``int``,
    other values as the float with that decimal identity when one exists, else the normalized Decimal.
    Callers must have checked ``is_number(v)``."""
    if type(v) is int:
        return v
    if type(v) is float:
        if -_FAST_FLOAT_LIMIT < v < _FAST_FLOAT_LIMIT:
            # A float below 2**53 that is integral equals (and hashes like) the int; otherwise its repr
            # identity is the float itself.
            return v
        d = Decimal(repr(v))
    else:
        d = to_decimal(v)
    if d == d.to_integral_value():
        return int(d)
    f = float(d)
    if math.isfinite(f) and Decimal(repr(f)) == d:
        return f
    return d.normalize()
