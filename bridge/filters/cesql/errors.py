"""The error model of CESQL v1 (spec section 3.3): the error kinds, the parse error and the evaluation error.

A parse error stops compilation (``CesqlParseError``, with the 1-based character position of the mistake).
Evaluation errors follow the spec's "fail fast" mode (section 4.1), which the spec recommends for filters: the
operator or function where the error arises gives its defined value (``LEFT('abc', -2)`` gives ``'abc'``,
``5 / 0`` gives ``0``, a failed cast the zero value of the operator's return type), and every enclosing
operator stops evaluating and gives the zero value of its own return type. ``EvalError`` carries the kind, the
value and the node where it arose up to the root, where ``CompiledExpression.evaluate`` picks the result.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CAST",
    "FUNCTION_EVALUATION",
    "GENERIC",
    "KINDS",
    "MATH",
    "MISSING_ATTRIBUTE",
    "MISSING_FUNCTION",
    "PARSE",
    "RUNTIME_KINDS",
    "CesqlParseError",
    "EvalError",
    "Value",
]

Value = bool | int | str
"""A CESQL value: Boolean, Integer (32-bit signed) or String."""

# The error kinds, spelled as the CESQL TCK spells them (cesql_tck/README.md).
PARSE: Final = "parse"
MATH: Final = "math"
CAST: Final = "cast"
MISSING_ATTRIBUTE: Final = "missingAttribute"
MISSING_FUNCTION: Final = "missingFunction"
FUNCTION_EVALUATION: Final = "functionEvaluation"
GENERIC: Final = "generic"

KINDS: Final = (PARSE, MATH, CAST, MISSING_FUNCTION, FUNCTION_EVALUATION, MISSING_ATTRIBUTE, GENERIC)
RUNTIME_KINDS: Final = tuple(k for k in KINDS if k != PARSE)
"""The kinds an evaluation can report (a parse error happens before there is anything to evaluate)."""


class CesqlParseError(ValueError):
    """An expression that is not CESQL: ``position`` is the 1-based character position of the mistake."""

    kind: Final = PARSE

    def __init__(self, position: int, message: str) -> None:
        self.position = position
        self.message = message
        super().__init__(position, message)

    def __str__(self) -> str:
        return f"parse error at position {self.position}: {self.message}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.position, self.message))


class EvalError(Exception):
    """An evaluation error travelling to the root: ``kind`` (one of ``RUNTIME_KINDS``), the ``value`` the failing
    operator or function defines, the ``origin`` node it arose in, and a ``detail`` for people."""

    __slots__ = ("detail", "kind", "origin", "value")

    def __init__(self, kind: str, value: Value, origin: object, detail: str) -> None:
        self.kind = kind
        self.value = value
        self.origin = origin
        self.detail = detail
        super().__init__(kind, detail)

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"
