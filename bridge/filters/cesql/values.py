"""CESQL values and the type casts of spec section 3.7, and how an event's attribute value becomes a CESQL value.

Values are Python ``bool``, ``int`` (always within 32 bits) and ``str``; a type is one of those three classes,
or ``None`` where it is only known at evaluation time (an attribute's). Every cast between the three types is
defined (Integer <-> Boolean included since v1.0); String -> Integer and String -> Boolean fail on text that is
not an integer / "true" / "false", with a *Cast* error and the zero value of the casting operator's return type.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from bridge import jsonutil
from bridge.filters.cesql.errors import CAST, GENERIC, EvalError, Value

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "CastFn",
    "Type",
    "can_cast",
    "caster",
    "from_attribute",
    "shown",
    "to_bool",
    "to_int",
    "to_str",
    "type_name",
    "zero",
]

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1

Type = type[bool] | type[int] | type[str] | None
CastFn = Callable[[Value, object, Value], Any]

_INTEGER: Final = re.compile(r"[+-]?[0-9]+")  # ASCII digits only (int() would take "1_000", " 7" and "٣")
_NAMES: Final = {bool: "Boolean", int: "Integer", str: "String"}


def type_name(t: Type) -> str:
    return _NAMES[t] if t is not None else "any type"


def zero(t: Type) -> Value:
    """The zero value of ``t`` (spec 3.1); Boolean ``false`` where the type is not known (spec 3.2)."""
    if t is int:
        return 0
    if t is str:
        return ""
    return False


def shown(value: Value, limit: int = 40) -> str:
    """``value`` as CESQL would write it, cut for error messages."""
    if value.__class__ is bool:
        return "TRUE" if value else "FALSE"
    if value.__class__ is int:
        return str(value)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _fail(value: Value, target: str, origin: object, result: Value) -> EvalError:
    return EvalError(CAST, result, origin, f"cannot cast {type_name(type(value))} {shown(value)} to {target}")


def to_bool(value: Value, origin: object, result: Value) -> bool:
    """Cast to Boolean; on failure raise a Cast error whose value is ``result``."""
    if value.__class__ is bool:
        return value  # type: ignore[return-value]
    if value.__class__ is int:
        return value != 0
    lowered = value.lower()  # type: ignore[union-attr]
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise _fail(value, "Boolean", origin, result)


def to_int(value: Value, origin: object, result: Value) -> int:
    """Cast to Integer (a String must be a base 10 integer within 32 bits); on failure raise a Cast error."""
    if value.__class__ is int:
        return value  # type: ignore[return-value]
    if value.__class__ is bool:
        return 1 if value else 0
    if _INTEGER.fullmatch(value) is not None:  # type: ignore[arg-type]
        digits = value.lstrip("+-").lstrip("0") or "0"  # type: ignore[union-attr]
        if len(digits) <= 10:  # never int() on a long text (Python refuses beyond 4300 digits)
            number = -int(digits) if value[0] == "-" else int(digits)  # type: ignore[index]
            if INT_MIN <= number <= INT_MAX:
                return number
    raise _fail(value, "Integer", origin, result)


def to_str(value: Value, origin: object = None, result: Value = "") -> str:
    """Cast to String (always defined)."""
    if value.__class__ is str:
        return value  # type: ignore[return-value]
    if value.__class__ is bool:
        return "true" if value else "false"
    return str(value)


_CASTERS: Final[dict[type, CastFn]] = {bool: to_bool, int: to_int, str: to_str}


def caster(target: type) -> CastFn:
    """The cast function to ``target`` (``bool``, ``int`` or ``str``)."""
    return _CASTERS[target]


def can_cast(value: Value, target: type) -> bool:
    try:
        _CASTERS[target](value, None, False)
    except EvalError:
        return False
    return True


def from_attribute(raw: Any, origin: object) -> Value:
    """The CESQL value of an attribute or extension value found in an event (never ``None``: the caller treats
    that as missing). Booleans, 32-bit integers and strings are themselves; anything else is represented as a
    String (spec 3.2): a larger integer or a float as its JSON number, an object or array as its JSON text."""
    cls = raw.__class__
    if cls is str or cls is bool:
        return raw  # type: ignore[no-any-return]
    if cls is int:
        return raw if INT_MIN <= raw <= INT_MAX else _as_text(raw, origin)  # type: ignore[no-any-return]
    if isinstance(raw, str):
        return str(raw)
    if isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, int):
        return from_attribute(int(raw), origin)
    return _as_text(raw, origin)


def _as_text(raw: Any, origin: object) -> str:
    try:
        return jsonutil.dumps(raw).decode("utf-8", "replace")
    except (TypeError, ValueError) as exc:
        try:
            return str(raw)
        except Exception:
            raise EvalError(GENERIC, False, origin, f"attribute value cannot be represented: {exc}") from None
