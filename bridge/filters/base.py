"""Shared pieces of the filter dialects: the error type, the ``Filter`` protocol, JSON paths and the
value-kind helpers used on the hot path.

A compiled filter never looks at its source spec again: ``matches`` runs closures and frozen sets built once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, Protocol, runtime_checkable

__all__ = [
    "MISSING",
    "Filter",
    "FilterError",
    "index_path",
    "join_path",
    "type_name",
]


class FilterError(ValueError):
    """An invalid filter spec: ``path`` locates the mistake (``detail.status[0]``), ``message`` says what."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path or "$"
        self.message = message
        super().__init__(f"{self.path}: {message}")

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.message))


@runtime_checkable
class Filter(Protocol):
    """What a route's filter is: a predicate over an event as a plain dict. The compiled dialects implement it
    (``CesqlFilter``, ``EventBridgeFilter``, ``EventGridFilter``, which also say their ``dialect``), and so may a
    test's own."""

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True when ``event`` (a canonical CloudEvent dict or a raw event dict) passes the filter."""
        ...


class _Missing:
    """Sentinel for "this key is not in the event" (distinct from a JSON ``null``)."""

    __slots__ = ()
    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

_PLAIN_KEY = re.compile(r"[^.\[\]\s\"]+")


def join_path(base: str, key: str) -> str:
    """``base`` extended by the object key ``key``; keys that would be ambiguous are quoted."""
    part = key if _PLAIN_KEY.fullmatch(key) else '["' + key.replace('"', '\\"') + '"]'
    if not base:
        return part
    if part.startswith("["):
        return base + part
    return f"{base}.{part}"


def index_path(base: str, index: int) -> str:
    """``base`` extended by the array index ``index``."""
    return f"{base}[{index}]"


def type_name(value: object) -> str:
    """The JSON type name of ``value`` for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, float) and not math.isfinite(value):
        return "non-finite number"
    if isinstance(value, int | float | Decimal):
        return "number"
    return type(value).__name__
