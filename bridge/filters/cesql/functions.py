"""The built-in functions (spec section 3.5, and the casting functions of the CESQL TCK and the Go and Java SDKs).

A function is found by its upper-cased name and the number of arguments; an invocation that matches no
definition evaluates to ``false`` with a *MissingFunction* error. Arguments are cast to the parameter types
before the call (spec 3.7; ``None`` is "any type", as for ``INT(x)``). Strings are sequences of Unicode code
points: ``LENGTH``, ``LEFT``, ``RIGHT`` and ``SUBSTRING`` count code points.

| function | types |
|---|---|
| ``LENGTH(x)`` | String -> Integer |
| ``CONCAT(x1, ..., xn)``, n >= 0 | String^n -> String |
| ``CONCAT_WS(delimiter, x1, ..., xn)``, n >= 0 | String x String^n -> String |
| ``LOWER(x)``, ``UPPER(x)``, ``TRIM(x)`` | String -> String |
| ``LEFT(x, n)``, ``RIGHT(x, n)`` | String x Integer -> String |
| ``SUBSTRING(x, pos)``, ``SUBSTRING(x, pos, len)`` | String x Integer [x Integer] -> String |
| ``ABS(x)`` | Integer -> Integer |
| ``INT(x)``, ``BOOL(x)``, ``STRING(x)`` | Any -> Integer / Boolean / String (the casts of spec 3.7) |
| ``IS_INT(x)``, ``IS_BOOL(x)`` | Any -> Boolean: would ``INT(x)`` / ``BOOL(x)`` succeed? |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from bridge.filters.cesql.errors import FUNCTION_EVALUATION, MATH, EvalError, Value
from bridge.filters.cesql.values import INT_MAX, INT_MIN, Type, can_cast, to_bool, to_int, to_str

__all__ = ["MAX_STRING", "Function", "names", "resolve"]

MAX_STRING: Final = 65_536
"""Longest string ``CONCAT`` / ``CONCAT_WS`` build (characters); beyond, a FunctionEvaluation error. Without a
bound, nested CONCATs of an attribute double its length at each level."""

# Unicode White_Space (PropList.txt): what TRIM removes, and only that (spec 3.5.1).
WHITESPACE: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


class Function:
    """One definition: fixed parameter types, an optional variadic tail of ``rest`` type, the return type."""

    __slots__ = ("impl", "name", "params", "rest", "returns", "variadic")

    def __init__(self, name: str, params: Sequence[Type], returns: type, impl: Callable[..., Value],
                 rest: Type = None, variadic: bool = False) -> None:
        self.name = name
        self.params = tuple(params)
        self.returns = returns
        self.impl = impl
        self.rest = rest
        self.variadic = variadic

    def accepts(self, arity: int) -> bool:
        return arity >= len(self.params) if self.variadic else arity == len(self.params)

    def param_type(self, index: int) -> Type:
        return self.params[index] if index < len(self.params) else self.rest


def _failed(kind: str, value: Value, detail: str) -> EvalError:
    return EvalError(kind, value, None, detail)  # the invocation sets the origin


def _bounded(text: str, name: str) -> str:
    if len(text) > MAX_STRING:
        raise _failed(FUNCTION_EVALUATION, "", f"{name} result longer than {MAX_STRING} characters")
    return text


def _concat(*parts: str) -> str:
    return _bounded("".join(parts), "CONCAT")


def _concat_ws(delimiter: str, *parts: str) -> str:
    return _bounded(delimiter.join(parts), "CONCAT_WS")


def _left(x: str, n: int) -> str:
    if n < 0:
        raise _failed(FUNCTION_EVALUATION, x, f"LEFT length argument is negative ({n})")
    return x[:n]


def _right(x: str, n: int) -> str:
    if n < 0:
        raise _failed(FUNCTION_EVALUATION, x, f"RIGHT length argument is negative ({n})")
    return x if n >= len(x) else x[len(x) - n :]


def _start(x: str, pos: int) -> int:
    if pos > len(x) or pos < -len(x):
        raise _failed(FUNCTION_EVALUATION, "", f"SUBSTRING position {pos} is outside a string of length {len(x)}")
    return pos - 1 if pos > 0 else len(x) + pos


def _substring(x: str, pos: int) -> str:
    begin = _start(x, pos)
    return "" if pos == 0 else x[begin:]


def _substring_len(x: str, pos: int, length: int) -> str:
    begin = _start(x, pos)
    if length < 0:
        raise _failed(FUNCTION_EVALUATION, "", f"SUBSTRING length argument is negative ({length})")
    return "" if pos == 0 else x[begin : begin + length]


def _abs(x: int) -> int:
    if x == INT_MIN:
        raise _failed(MATH, INT_MAX, "ABS(-2147483648) overflows 32 bits")
    return abs(x)


_DEFINITIONS: Final = (
    Function("LENGTH", [str], int, len),
    Function("CONCAT", [], str, _concat, rest=str, variadic=True),
    Function("CONCAT_WS", [str], str, _concat_ws, rest=str, variadic=True),
    Function("LOWER", [str], str, str.lower),
    Function("UPPER", [str], str, str.upper),
    Function("TRIM", [str], str, lambda x: x.strip(WHITESPACE)),
    Function("LEFT", [str, int], str, _left),
    Function("RIGHT", [str, int], str, _right),
    Function("SUBSTRING", [str, int], str, _substring),
    Function("SUBSTRING", [str, int, int], str, _substring_len),
    Function("ABS", [int], int, _abs),
    Function("INT", [None], int, lambda x: to_int(x, None, 0)),
    Function("BOOL", [None], bool, lambda x: to_bool(x, None, False)),
    Function("STRING", [None], str, to_str),
    Function("IS_INT", [None], bool, lambda x: can_cast(x, int)),
    Function("IS_BOOL", [None], bool, lambda x: can_cast(x, bool)),
)
_BY_NAME: Final[dict[str, tuple[Function, ...]]] = {}
for _f in _DEFINITIONS:
    _BY_NAME[_f.name] = (*_BY_NAME.get(_f.name, ()), _f)


def resolve(name: str, arity: int) -> Function | None:
    """The definition of ``name`` (upper case) taking ``arity`` arguments, or None."""
    for definition in _BY_NAME.get(name, ()):
        if definition.accepts(arity):
            return definition
    return None


def names() -> list[str]:
    """Every built-in function name with its arities, for messages and docs: ``["ABS(1)", "CONCAT(0+)", ...]``."""
    out: list[str] = []
    for name in sorted(_BY_NAME):
        for d in _BY_NAME[name]:
            out.append(f"{name}({len(d.params)}{'+' if d.variadic else ''})")
    return out

