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

With several groups in flight (``sink.max_inflight_groups`` above 1) the next group is planned before the
previous one is confirmed: the plans not yet settled are kept (``_unsettled``) and ``plan`` reads their decisions
over what the store says, so a transition on its way is never decided a second time.

After the sink confirmed the group, ``Plan.settle`` records the new states and sequences (never before: a crash
in between publishes them again, at least once, like dedup) and drops the plan from ``_unsettled``; a record
isolated as unpublishable is not recorded (a plan made meanwhile took it for published). ``Plan.discard`` drops
a plan that will not be published (an aborted transaction). A store that fails follows ``on_store_error``
(``bridge.storeguard``): ``block`` waits and retries, ``pass`` publishes unchecked (counted).

This is the pipeline's plug-in (``bridge.pipeline.plugin.GroupPlugin``): the pipeline calls it and never
imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import structlog

from bridge.envelope import CloudEvent
from bridge.metrics import EVENTS_OUT, MetricGroup, Metrics
from bridge.model import Sink
from bridge.pipeline.plugin import DeadRecord, Record, Route, StateValues
from bridge.state.attributes import StateSpec
from bridge.state.config import STATE_ROUTE, StateConfig
from bridge.state.store import Entry, MemoryStateStore, StateKey, StateStore
from bridge.storeguard import StoreBypassed, StoreGuard

log = structlog.get_logger("bridge.state")

STATE_SCOPE = "@state"
_NO_VALUE = b""


class LifecycleMetrics(MetricGroup):
    """What ``changes_only`` routes and the state topic write."""

    def __init__(self, m: Metrics) -> None:
        super().__init__(m)
        self.unchanged = m.counter(
            "bridge_events_unchanged", "Events a changes_only route did not publish: same state as the last one it "
            "published for the subject, or late, per route", ["route"], prime=False)
        self.state_unchecked = m.counter(
            "bridge_state_unchecked", "State decisions (changes_only routes, state topic) made without the state "
            "store because it failed (dedup.on_store_error: pass): published as changes")
        self.events_out = m.counter_of(EVENTS_OUT)


@dataclass(slots=True, eq=False)
class Plan:
    """What ``plan`` decided for one group (a ``GroupPlan``): the kept (record, route, key) checks and the entries
    to record once the sink confirmed the group."""

    owner: Lifecycle
    kept: list[tuple[Record, Route, StateKey]] = field(default_factory=list)
    writes: dict[StateKey, Entry] = field(default_factory=dict)
    causes: dict[StateKey, Record] = field(default_factory=dict)  # the record behind each write

    async def settle(self) -> None:
        await self.owner.settle(self)

    def discard(self) -> None:
        self.owner.forget(self)

    def changes(self) -> list[tuple[Record, bytes, bytes]]:
        """The writes as durable entries (exactly-once delivery): what ``settle`` will record."""
        failed = self.owner.failed(self)
        return [(self.causes[key], encode_key(key), encode_entry(entry)) for key, entry in self.writes.items()
                if key not in failed]


def encode_key(key: StateKey) -> bytes:
    """(scope, source, subject) as a durable key."""
    return "\x00".join(key).encode()


def encode_entry(entry: Entry) -> bytes:
    """(sequence, state value) as a durable value: the sequence (no NUL in it), a NUL, the value's bytes."""
    return entry[0].encode() + b"\x00" + entry[1]


def decode(key: bytes, value: bytes) -> tuple[StateKey, str, bytes] | None:
    """A durable entry back as a store write, or None when it is not one of ours."""
    parts = key.decode(errors="replace").split("\x00")
    seq, sep, state = value.partition(b"\x00")
    if len(parts) != 3 or not sep:
        return None
    return (parts[0], parts[1], parts[2]), seq.decode(errors="replace"), state


class Lifecycle:
    """``changes_only`` routes and the state topic (see the module docstring)."""

    def __init__(self, routes: Sequence[Route], store: StateStore, metrics: Metrics, *,
                 topic: str | None = None, guard: StoreGuard | None = None, config: StateConfig | None = None) -> None:
        self.state_store = store
        self.metrics = LifecycleMetrics(metrics)
        self.guard = guard if guard is not None else StoreGuard(what="state store")
        self.config = config if config is not None else StateConfig(topic=topic)
        self._unsettled: list[Plan] = []  # plans of groups in flight, oldest first
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
        for name in self._slot:  # every series of bridge.state at 0 from the start
            self.metrics.unchanged.labels(name)
        if self.state_route is not None:
            self.metrics.events_out.labels(STATE_ROUTE)
        self._needs: dict[int, tuple[tuple[Route, ...], bool]] = {}  # by id: the router shares its route tuples
        self._rewrites: dict[tuple[int | bool, ...], tuple[tuple[Route, ...], tuple[Route, ...]]] = {}

    @property
    def active(self) -> bool:
        return bool(self.specs) or self.state_route is not None

    @property
    def encode_unrouted(self) -> bool:
        """The state topic takes every event, also those no route wants: they must be encoded."""
        return self.state_route is not None

    @property
    def store(self) -> StoreGuard:
        """The state store's health (readiness): its guard, shared with dedup when dedup is on."""
        return self.guard

    @property
    def pending(self) -> int:
        """Keys decided by plans not yet settled."""
        return len({key for plan in self._unsettled for key in plan.writes})

    async def start(self, sink: Sink) -> None:
        """Create (log-compacted) or check the state topic before anything is published on it."""
        if self.state_route is not None:
            from bridge.state.topic import prepare_state_topic

            await prepare_state_topic(sink, self.config)

    # -- admission --------------------------------------------------------------------------------------
    def extract(self, event: CloudEvent, routes: tuple[Route, ...]) -> StateValues | None:
        """What a record must keep for the decisions: (subject, state value per spec), or None if nothing."""
        specs = self.specs
        if specs:
            known = self._needs.get(id(routes))
            if known is None or known[0] is not routes:
                known = self._needs[id(routes)] = (routes, any(r.changes for r in routes))
            if known[1]:
                if len(specs) == 1:
                    return (event.subject, specs[0].value(event))
                return (event.subject, *[spec.value(event) for spec in specs])
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
            for route in e.routes:
                if route.changes:
                    value = st[slot[route.name]]
                    assert isinstance(value, bytes)
                    checks.append((e, route, (route.name, e.dkey[0], subject), value))
            if state_route is not None and e.meta:
                checks.append((e, state_route, (STATE_SCOPE, "", subject), _NO_VALUE))
        if not checks:
            return None
        keys = list({c[2]: None for c in checks})
        found = await self._lookup(keys, len(checks))
        current: dict[StateKey, Entry | None] = dict(zip(keys, found, strict=True))
        unsettled = self._unsettled
        if unsettled:  # decisions on their way (groups planned, not yet confirmed) are newer than the store's
            self._overlay(keys, current)
        plan = Plan(self)
        kept, writes, causes = plan.kept, plan.writes, plan.causes
        dropped: dict[Record, list[Route]] = {}
        added: list[Record] = []
        unchanged: dict[str, int] = {}
        for rec, route, key, value in checks:
            prev = current[key]
            seq = rec.seq
            newer = not rec.late and (prev is None or seq >= prev[0])
            if route is state_route:
                if newer:
                    current[key] = writes[key] = (seq, _NO_VALUE)
                    causes[key] = rec
                    added.append(rec)
                    kept.append((rec, route, key))
                continue
            if newer and (prev is None or prev[1] != value):
                current[key] = writes[key] = (seq, value)
                causes[key] = rec
                kept.append((rec, route, key))
                continue
            found_drop = dropped.get(rec)
            if found_drop is None:
                dropped[rec] = [route]
            else:
                found_drop.append(route)
            unchanged[route.name] = unchanged.get(route.name, 0) + 1
            if newer and prev is not None and seq > prev[0]:  # the same state, seen later: never go back
                current[key] = writes[key] = (seq, prev[1])
                causes[key] = rec
        rewrite = self._rewrite
        for rec in added:
            drop = dropped.pop(rec, None)
            rec.routes = rewrite(rec.routes, tuple(drop) if drop else (), True)
        for rec, drop in dropped.items():
            rec.routes = rewrite(rec.routes, tuple(drop), False)
        for name, n in unchanged.items():
            self.metrics.unchanged.labels(name).inc(n)
        if not writes:
            return None
        unsettled.append(plan)
        return plan

    def _overlay(self, keys: list[StateKey], current: dict[StateKey, Entry | None]) -> None:
        """Read the decisions of the plans in flight over the store's entries: per key, the latest plan's (a plan
        writes a key only when its entry is newer than what it saw, so the latest holds the newest)."""
        unsettled = self._unsettled
        for key in keys:
            for plan in reversed(unsettled):
                mine = plan.writes.get(key)
                if mine is not None:
                    stored = current[key]
                    if stored is None or mine[0] >= stored[0]:
                        current[key] = mine
                    break

    def _rewrite(self, routes: tuple[Route, ...], drop: tuple[Route, ...], add: bool) -> tuple[Route, ...]:
        """``routes`` without ``drop``, plus the state topic's route if ``add``: one shared tuple per combination
        (records keep a reference, not a tuple of their own)."""
        key = (id(routes), *map(id, drop), add)
        hit = self._rewrites.get(key)
        if hit is not None and hit[0] is routes:
            return hit[1]
        out = tuple(r for r in routes if all(r is not d for d in drop))
        if add and self.state_route is not None:
            out = (*out, self.state_route)
        if len(self._rewrites) >= 4096:
            self._rewrites.clear()
        self._rewrites[key] = (routes, out)
        return out

    @staticmethod
    def failed(plan: Plan) -> set[StateKey]:
        """Keys of kept decisions whose record lost the route (isolated and dead-lettered instead: delivery.py)."""
        return {key for rec, route, key in plan.kept if all(r is not route for r in rec.routes)}

    async def settle(self, plan: Plan) -> None:
        """The group was published: record the states and sequences of what the sink confirmed, then drop the
        plan's decisions from those on their way (the store has them now)."""
        failed = self.failed(plan)
        writes = [(k, seq, value) for k, (seq, value) in plan.writes.items() if k not in failed]
        try:
            if self._memory is not None:
                self._memory.put_now(writes)
            elif writes:
                await self.guard.call(self.state_store.put, writes)
        except StoreBypassed:
            log.warning("state.states_not_recorded", states=len(writes), detail="the state store is failing",
                        error=self.guard.store_error)
        finally:
            self.forget(plan)

    def forget(self, plan: Plan) -> None:
        """Drop the plan's decisions from those on their way (a later plan's decisions stay)."""
        unsettled = self._unsettled
        for i, known in enumerate(unsettled):
            if known is plan:
                del unsettled[i]
                return

    def reset(self) -> None:
        """Forget the plans on their way and what the memory store holds (a rewind; ``restore`` follows)."""
        self._unsettled.clear()
        if self._memory is not None:
            self._memory.clear()

    def restore(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """Take back the durable entries (exactly-once delivery keeps the state store in memory)."""
        writes = [w for w in (decode(k, v) for k, v in entries) if w is not None]
        if self._memory is not None:
            self._memory.put_now(writes)

    async def _lookup(self, keys: list[StateKey], checks: int) -> list[Entry | None]:
        if self._memory is not None:
            return self._memory.get_now(keys)
        try:
            return await self.guard.call(self.state_store.get, keys)
        except StoreBypassed:
            self.metrics.state_unchecked.inc(checks)
            return [None] * len(keys)

    async def close(self) -> None:
        await self.state_store.close()
