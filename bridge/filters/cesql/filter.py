"""CESQL as a route filter: ``{"cesql": "<expression>"}``, parsed and compiled once.

As a filter predicate (spec 1.2) an event passes only when the expression evaluates to ``true`` without error.
An evaluation error is counted through the filter's error hook (``with_error_hook``: the router binds it to
``bridge_filter_errors_total{route,kind}``); nothing extra runs when no error happens.

Beyond parsing, two mistakes that would make a route match nothing, ever, are refused when the filter is compiled
(spec 3.3: "some error checks SHOULD be done at compile time"): an expression whose type is known not to be
Boolean (``platform``... is fine, ``LENGTH(subject)`` is not), and a call of a function that does not exist
with that many arguments. ``bridge cesql`` evaluates such expressions anyway, as the spec defines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from bridge.filters.base import FilterError, join_path
from bridge.filters.cesql.compiler import Expression, static_type
from bridge.filters.cesql.errors import GENERIC, CesqlParseError, EvalError, Value
from bridge.filters.cesql.functions import names, resolve
from bridge.filters.cesql.nodes import Call, walk
from bridge.filters.cesql.parser import parse
from bridge.filters.cesql.values import type_name

__all__ = ["KEY", "CesqlFilter", "compile_expression"]

KEY: Final = "cesql"
ErrorHook = Callable[[str], object]


def compile_expression(text: str) -> Expression:
    """Parse and compile ``text``; raises ``CesqlParseError``."""
    return Expression(parse(text))


def _check(expression: Expression, path: str) -> None:
    for node in walk(expression.root):
        if isinstance(node, Call) and resolve(node.name, len(node.args)) is None:
            raise FilterError(path, f"position {node.pos + 1}: there is no function {node.name} taking "
                                    f"{len(node.args)} argument(s) (built-ins: {', '.join(names())})")
    result = static_type(expression.root)
    if result is not None and result is not bool:
        name = type_name(result)
        raise FilterError(path, f"a filter must evaluate to a Boolean; this expression gives {name} values")


class CesqlFilter:
    """A compiled CESQL filter; ``spec`` is ``{"cesql": "<expression>"}``."""

    __slots__ = ("_fn", "_hook", "expression", "spec")

    dialect: str = KEY

    def __init__(self, spec: Mapping[str, Any], path: str = "", *, _expression: Expression | None = None) -> None:
        if _expression is None:
            extra = sorted(str(k) for k in spec if k != KEY)
            if extra:
                raise FilterError(join_path(path, extra[0]), 'a CESQL filter has the single key "cesql"')
            text = spec.get(KEY)
            at = join_path(path, KEY)
            if not isinstance(text, str):
                raise FilterError(at, "a CESQL expression is a string")
            try:
                _expression = compile_expression(text)
            except CesqlParseError as exc:
                raise FilterError(at, str(exc)) from None
            _check(_expression, at)
        self.expression = _expression
        self.spec = spec
        self._fn = _expression.fn
        self._hook: ErrorHook | None = None

    @property
    def text(self) -> str:
        return str(self.spec[KEY])

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True when the expression evaluates to ``true`` without error on ``event``."""
        try:
            return self._fn(event) is True
        except EvalError as exc:
            if self._hook is not None:
                self._hook(exc.kind)
            return False
        except Exception:  # a defect: reported as the spec's GenericError, never raised into the pipeline
            if self._hook is not None:
                self._hook(GENERIC)
            return False

    def evaluate(self, event: Mapping[str, Any]) -> tuple[Value, str | None]:
        """The expression's value on ``event`` and the kind of the error that stopped it, or None."""
        return self.expression.evaluate(event)

    def with_error_hook(self, hook: ErrorHook) -> CesqlFilter:
        """The same compiled filter, calling ``hook(kind)`` for each evaluation that ends in an error."""
        twin = CesqlFilter(self.spec, _expression=self.expression)
        twin._hook = hook
        return twin

    def __repr__(self) -> str:
        return f"CesqlFilter({self.text!r})"
