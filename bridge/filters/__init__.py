"""Event filters in three dialects (docs/design.md, "Pipeline semantics"):

* ``cesql``: CloudEvents SQL v1, ``{"cesql": "<expression>"}`` (see ``bridge.filters.cesql``);
* ``eventbridge``: Amazon EventBridge event patterns, every operator (see ``bridge.filters.eventbridge``);
* ``eventgrid``: Azure Event Grid subscription filters (see ``bridge.filters.eventgrid``); with EventBridge
  patterns, users bring their existing rules unchanged.

Filters are validated and compiled once (``compile_filter``); ``Filter.matches`` then runs on a plain dict
event (a canonical CloudEvent from ``CloudEvent.to_dict()`` or the original raw event) without re-reading the
spec. Invalid specs raise ``FilterError`` whose ``path`` locates the mistake. docs/filters.md has the details.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bridge.filters.base import Filter, FilterError
from bridge.filters.cesql import CesqlFilter
from bridge.filters.eventbridge import EventBridgeFilter
from bridge.filters.eventgrid import EventGridFilter, is_eventgrid_filter

__all__ = [
    "DIALECTS",
    "CesqlFilter",
    "EventBridgeFilter",
    "EventGridFilter",
    "Filter",
    "FilterError",
    "compile_filter",
    "detect_dialect",
]

CESQL: Final = "cesql"
EVENTBRIDGE: Final = "eventbridge"
EVENTGRID: Final = "eventgrid"
DIALECTS: Final = (CESQL, EVENTBRIDGE, EVENTGRID)


def detect_dialect(spec: Mapping[str, Any], path: str = "") -> str:
    """``"cesql"`` when ``spec`` has the key ``cesql`` with a string (the expression); ``"eventgrid"`` when it has
    an Event Grid filter key (``includedEventTypes``, ``subjectBeginsWith``, ``subjectEndsWith``,
    ``isSubjectCaseSensitive``, ``advancedFilters``, ``enableAdvancedFilteringOnArrays``) at the top or inside a
    lone ``filter`` wrapper; else ``"eventbridge"`` (where ``{"cesql": ["x"]}`` is a pattern on a field named
    cesql). Raises ``FilterError`` when ``spec`` is not a JSON object."""
    if not isinstance(spec, Mapping):
        shown = "array" if isinstance(spec, list | tuple) else type(spec).__name__
        raise FilterError(path, f"a filter must be a JSON object, got {shown}")
    if isinstance(spec.get(CESQL), str):
        return CESQL
    return EVENTGRID if is_eventgrid_filter(spec) else EVENTBRIDGE


def compile_filter(
    spec: Mapping[str, Any], dialect: str = "auto", path: str = ""
) -> CesqlFilter | EventBridgeFilter | EventGridFilter:
    """Validate and compile ``spec``. ``dialect`` is ``"auto"`` (recognised from the shape), ``"cesql"``,
    ``"eventbridge"`` or ``"eventgrid"``; error paths are prefixed with ``path`` (e.g. ``routes[2].filter``)."""
    if dialect == "auto":
        dialect = detect_dialect(spec, path)
    elif not isinstance(spec, Mapping):
        detect_dialect(spec, path)  # raises the "must be a JSON object" error
    if dialect == CESQL:
        return CesqlFilter(spec, path)
    if dialect == EVENTBRIDGE:
        return EventBridgeFilter(spec, path)
    if dialect == EVENTGRID:
        return EventGridFilter(spec, path)
    raise FilterError(path, f'unknown filter dialect "{dialect}" (expected auto, cesql, eventbridge or eventgrid)')
