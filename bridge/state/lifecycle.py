"""Transitions only and the state topic: decided by the delivery worker, in sequence order, once per group.

Admission keeps, in ``Record.state``, the event's subject and the state value of each distinct
``state_attributes`` set (``bridge.state.attributes``), only when a ``changes_only`` route matched it or a
state topic is configured. Records leave the reorder buffer in sequence order per subject; just before the
delivery worker publishes a group, ``plan``:

- looks up, in one store call, the last published state of every (route, source, subject) of the group's
  ``changes_only`` routes and the last sequence of every subject on the state topic;
- walks the group in order: a ``changes_only`` route keeps a record only when its state differs from the last
  one the route published (a late record, or one older than what the route recorded, is never a change); the
  state topic gets every record not late and not older than the subject's last one, routed or not;
- rewrites each record's routes accordingly (the state topic is the extra route ``state``).

After the sink confirmed the group, ``settle`` records the new states and sequences (never before: a crash in
between publishes them again, at least once, like dedup). A store that fails follows ``on_store_error``
(``bridge.pipeline.dedup.StoreGuard``): ``block`` waits and retries, ``pass`` publishes unchecked (counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from bridge.envelope import CloudEvent
from bridge.metrics import Metrics
from bridge.pipeline.dedup import StoreBypassed, StoreGuard
from bridge.pipeline.records import DeadRecord, Record
from bridge.pipeline.router import Route
from bridge.state.attributes import StateSpec
from bridge.state.config import STATE_ROUTE
from bridge.state.store import Entry, MemoryStateStore, StateKey, StateStore

log = structlog.get_logger("bridge.state")

STATE_SCOPE = "@state"
_NO_VALUE = b""


@dataclass(slots=True)
class Plan:
    """What ``plan`` decided for one group, for ``settle``."""

    kept: list[tuple[Record, Route, StateKey]] = field(default_factory=list)
    writes: dict[StateKey, Entry] = field(default_factory=dict)


class Lifecycle:
    """``changes_only`` routes and the state topic (see the module docstring)."""

    def __init__(self, routes: Sequence[Route], store: StateStore, metrics: Metrics, *,
                 topic: str | None = None, guard: StoreGuard | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.guard = guard if guard is not None else StoreGuard(what="state store")
        self._memory = store if isinstance(store, MemoryStateStore) else None
        self.specs: list[StateSpec] = []
        self._slot: dict[str, int] = {}  # route name -> index of its state value in Record.state
        by_paths: dict[tuple[str, ...], int] = {}
        for r in routes:
            if r.changes:
                if r.changes not in by_paths:
                    by_paths[r.changes] = len(self.specs)
                    self.specs.append(StateSpec(r.changes))
                self._slot[r.name] = 1 + by_paths[r.changes]
        self.state_route = Route(STATE_ROUTE, topic) if topic else None
        self._needs: dict[tuple[Route, ...], bool] = {}

    @property
    def active(self) -> bool:
        return bool(self.specs) or self.state_route is not None

    @property
    def encode_unrouted(self) -> bool:
        """The state topic takes every event, also those no route wants: they must be encoded."""
        return self.state_route is not None

    # -- admission --------------------------------------------------------------------------------------
    def extract(self, event: CloudEvent, routes: tuple[Route, ...]) -> tuple[str | bytes, ...] | None:
        """What a record must keep for the decisions: (subject, state value per spec), or None if nothing."""
        if self.specs:
            needs = self._needs.get(routes)
            if needs is None:
                needs = self._needs[routes] = any(r.changes for r in routes)
            if needs:
                return (event.subject, *[spec.value(event) for spec in self.specs])
        if self.state_route is not None:
            return (event.subject,)
        return None

    # -- delivery ---------------------------------------------------------------------------------------
    async def plan(self, box: Sequence[Record | DeadRecord]) -> Plan | None:
        """Decide, in order, which routes each record of the group is published on (see the module docstring)."""
        state_route = self.state_route
        slot = self._slot
        checks: list[tuple[Record, Route, StateKey, bytes]] = []
        for e in box:
            if type(e) is not Record or e.state is None:
                continue
            st = e.state
            subject = st[0]
            assert isinstance(subject, str)
            subject_b = subject.encode()
            for route in e.routes:
                if route.changes:
                    value = st[slot[route.name]]
                    assert isinstance(value, bytes)
                    checks.append((e, route, (route.name, e.dkey[0], subject_b), value))
            if state_route is not None and e.meta:
                checks.append((e, state_route, (STATE_SCOPE, "", subject_b), _NO_VALUE))
        if not checks:
            return None
        keys = list(dict.fromkeys(c[2] for c in checks))
        found = await self._lookup(keys, len(checks))
        current: dict[StateKey, Entry | None] = dict(zip(keys, found, strict=True))
        plan = Plan()
        dropped: dict[Record, list[Route]] = {}
        added: list[Record] = []
        unchanged: dict[str, int] = {}
        for rec, route, key, value in checks:
            prev = current[key]
            newer = not rec.late and (prev is None or rec.seq >= prev[0])
            if route is state_route:
                if newer:
                    current[key] = plan.writes[key] = (rec.seq, _NO_VALUE)
                    added.append(rec)
                    plan.kept.append((rec, route, key))
                continue
            if newer and (prev is None or prev[1] != value):
                current[key] = plan.writes[key] = (rec.seq, value)
                plan.kept.append((rec, route, key))
                continue
            dropped.setdefault(rec, []).append(route)
            unchanged[route.name] = unchanged.get(route.name, 0) + 1
            if newer and prev is not None and rec.seq > prev[0]:  # the same state, seen later: never go back
                current[key] = plan.writes[key] = (rec.seq, prev[1])
        for rec, routes in dropped.items():
            rec.routes = tuple(r for r in rec.routes if r not in routes)
        if added and state_route is not None:
            for rec in added:
                rec.routes = (*rec.routes, state_route)
        for name, n in unchanged.items():
            self.metrics.unchanged.labels(name).inc(n)
        return plan

    async def settle(self, plan: Plan | None) -> None:
        """The group was published: record the states and sequences of what the sink confirmed."""
        if plan is None or not plan.writes:
            return
        failed = {key for rec, route, key in plan.kept if route not in rec.routes}  # isolated, dead-lettered
        writes = [(k, seq, value) for k, (seq, value) in plan.writes.items() if k not in failed]
        if self._memory is not None:
            self._memory.put_now(writes)
            return
        try:
            await self.guard.call(self.store.put, writes)
        except StoreBypassed:
            log.warning("state.states_not_recorded", states=len(writes), detail="the state store is failing",
                        error=self.guard.store_error)

    async def _lookup(self, keys: list[StateKey], checks: int) -> list[Entry | None]:
        if self._memory is not None:
            return self._memory.get_now(keys)
        try:
            return await self.guard.call(self.store.get, keys)
        except StoreBypassed:
            self.metrics.state_unchecked.inc(checks)
            return [None] * len(keys)

    async def close(self) -> None:
        await self.store.close()
