"""Routes: a named list, each with filters (AND'd) and a destination topic. One event may match several."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bridge.envelope import CloudEvent
from bridge.filters.base import Filter
from bridge.filters.cesql import GENERIC, RUNTIME_KINDS
from bridge.metrics import MetricGroup, Metrics

Target = Literal["canonical", "original"]


@dataclass(frozen=True, slots=True)
class RouteFilter:
    """A compiled filter and the shape it applies to: the canonical CloudEvent or the original event."""

    matcher: Filter
    target: Target = "canonical"


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    topic: str
    filters: tuple[RouteFilter, ...] = ()
    changes: tuple[str, ...] = ()
    """``changes_only``: the attributes defining the state (``bridge.state``); empty: every event."""


class FilterMetrics(MetricGroup):
    """What the routes' filters write: CESQL evaluation errors, per route and error kind."""

    def __init__(self, m: Metrics) -> None:
        super().__init__(m)
        self.filter_errors = m.counter(
            "bridge_filter_errors", "CESQL filter evaluations that ended in an error (the event did not match the "
            "route), per route and CESQL error kind", ["route", "kind"])

    def error_counter(self, route: str) -> Callable[[str], None]:
        """What a route's CESQL filter calls with the kind of each evaluation error; exports the route's series of
        every kind at 0."""
        children = {kind: self.filter_errors.labels(route, kind) for kind in RUNTIME_KINDS}

        def count(kind: str) -> None:
            children.get(kind, children[GENERIC]).inc()

        return count


class Router:
    """Evaluates every route against an event and returns the routes that match.

    The result is a tuple shared by every event that matches the same routes (held records keep a reference,
    not a list of their own)."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        self._needs_canonical = any(f.target == "canonical" for r in self.routes for f in r.filters)
        self._unfiltered = all(not r.filters for r in self.routes)
        self._shared: dict[tuple[Route, ...], tuple[Route, ...]] = {(): ()}

    def match(self, event: CloudEvent) -> tuple[Route, ...]:
        if self._unfiltered:
            return self.routes
        canonical: Mapping[str, Any] | None = event.to_dict() if self._needs_canonical else None
        original: Mapping[str, Any] = event.original if event.original is not None else (canonical or {})
        out: list[Route] = []
        for route in self.routes:
            for f in route.filters:
                doc = canonical if f.target == "canonical" else original
                if doc is None or not f.matcher.matches(doc):
                    break
            else:
                out.append(route)
        key = tuple(out)
        return self._shared.setdefault(key, key)
