"""CloudEvents SQL (CESQL) v1.0, the CloudEvents project's own expression language, as the third filter dialect.

The language (spec: cloudevents/spec ``cesql/spec.md``, v1.0.0 of 2024-06-13): literals, attribute names,
``NOT``, unary ``-``, ``AND OR XOR``, comparisons, ``+ - * / %``, ``[NOT] LIKE``, ``[NOT] IN``, ``EXISTS``, the
built-in functions and the implicit casts, with the spec's error model. The pieces:

- ``lexer`` and ``parser``: text to a syntax tree (``nodes``), or ``CesqlParseError`` with the position;
- ``compiler`` (with ``operators``, ``functions``, ``like``, ``values``): the tree to closures, once;
- ``filter``: ``CesqlFilter``, the ``bridge.filters.Filter`` of a route (``{"cesql": "..."}``).

>>> expression = compile_expression("type = 'ml.job.status_changed' AND status IN ('failed', 'stopped')")
>>> expression.evaluate({"type": "ml.job.status_changed", "status": "failed"})
(True, None)
>>> compile_expression("1 / missing").evaluate({})
(0, 'missingAttribute')

docs/filters.md ("CloudEvents SQL") has the user-facing rules and the choices where the spec is unclear.
"""

from __future__ import annotations

from bridge.filters.cesql.compiler import Expression
from bridge.filters.cesql.errors import (
    CAST,
    FUNCTION_EVALUATION,
    GENERIC,
    KINDS,
    MATH,
    MISSING_ATTRIBUTE,
    MISSING_FUNCTION,
    PARSE,
    RUNTIME_KINDS,
    CesqlParseError,
    Value,
)
from bridge.filters.cesql.filter import KEY, CesqlFilter, compile_expression
from bridge.filters.cesql.parser import MAX_DEPTH, MAX_NESTING, parse

__all__ = [
    "CAST",
    "FUNCTION_EVALUATION",
    "GENERIC",
    "KEY",
    "KINDS",
    "MATH",
    "MAX_DEPTH",
    "MAX_NESTING",
    "MISSING_ATTRIBUTE",
    "MISSING_FUNCTION",
    "PARSE",
    "RUNTIME_KINDS",
    "CesqlFilter",
    "CesqlParseError",
    "Expression",
    "Value",
    "compile_expression",
    "parse",
]
