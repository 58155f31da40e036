"""Delivery: the outbox and the worker that publishes it, with retries and isolation of unpublishable records.

Records leave the ordering stage into the outbox. One worker takes the whole outbox as a group, hands it to the
sink (``Sink.enqueue``: in order, without waiting for the broker) and takes the next group while the first
awaits its confirmations: up to ``depth`` groups in flight (group commit: groups grow with load; the producer
writes them in order on every partition). Groups are settled oldest first, once confirmed. A failed group is
retried with backoff; a *permanent* failure (``PublishError`` with ``permanent=True``: a record the broker can
never take) makes the worker publish the group record by record and dead-letter the records that cannot be
published, so one bad record never blocks the stream. After a transient failure only the records the sink did
not acknowledge (``PublishError.unconfirmed``) are published again, in order, until the broker takes them; the
Kafka sink replaces its producer first, once every group in flight resolved (docs/design.md, "Delivery": the
error classes at the sink, and what order holds with ``depth`` above 1). The outbox is bounded in bytes: ``room()``
makes admission wait while it is full (backpressure).

Before a group is handed to the sink the plug-in (``bridge.pipeline.plugin``) plans it; once the sink confirmed it,
``bridge.pipeline.settlement`` runs the after-confirm steps, oldest group first.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from bridge import logs
from bridge.aio import completed, reraise_if_cancelled
from bridge.metrics import DEADLETTERED, EVENTS_OUT, MetricGroup, Metrics
from bridge.model import DeadLetter, Encoder, OutRecord, PublishError, Sink
from bridge.pipeline.plugin import GroupPlan, GroupPlugin
from bridge.pipeline.records import DeadRecord, Record, input_ids
from bridge.pipeline.router import Route
from bridge.pipeline.settlement import Settlement
from bridge.retry import PUBLISH, Backoff

log = structlog.get_logger("bridge.pipeline")

Entry = Record | DeadRecord


class DeliveryMetrics(MetricGroup):
    """What delivery writes."""

    def __init__(self, m: Metrics) -> None:
        super().__init__(m)
        self.events_out = m.counter_of(EVENTS_OUT)
        self.publish_errors = m.counter("bridge_publish_errors",
                                        "Records of failed publish attempts (each record once per failed attempt)")
        self.publish_latency = m.histogram("bridge_publish_latency_seconds",
                                           "Time to publish a group of records and get broker confirmation")
        self.e2e_latency = m.histogram("bridge_event_latency_seconds",
                                       "From receipt of a message to confirmed publish of its event")
        self.undeliverable = m.counter("bridge_undeliverable",
                                       "Dead letters that the dead-letter topic itself refused (logged, dropped)")
        self.deadlettered = m.counter_of(DEADLETTERED)


@dataclass(slots=True, eq=False)
class _Group:
    """One outbox group on its way: what it holds, what was handed to the sink, and the confirmation."""

    box: list[Entry]
    nbytes: int
    records: list[Record] = field(default_factory=list)
    dead: list[DeadRecord] = field(default_factory=list)
    out: list[OutRecord] = field(default_factory=list)
    plan: GroupPlan | None = None
    confirmed: asyncio.Future[None] | None = None
    started: float = 0.0


class Delivery:
    """The outbox, its worker and its retry policy."""

    def __init__(
        self,
        sink: Sink,
        encoder: Encoder,
        settlement: Settlement,
        metrics: Metrics,
        *,
        deadletter_topic: str,
        max_bytes: int,
        retry_backoff: Backoff = PUBLISH,
        clock: Callable[[], float] = time.monotonic,
        after_delivery: Callable[[], None] | None = None,
        plugin: GroupPlugin | None = None,
        depth: int = 2,
    ) -> None:
        self.sink = sink
        self.encoder = encoder
        self.settlement = settlement
        self.metrics = DeliveryMetrics(metrics)
        self.deadletter_topic = deadletter_topic
        self.max_bytes = max_bytes
        self.max_group_bytes = max(256 * 1024, max_bytes // 8)  # one group's share of the outbox bound
        self._backoff = retry_backoff
        self._clock = clock
        self._after = after_delivery
        self.plugin = plugin  # decides per group which routes each record goes to (bridge.state)
        self.depth = max(1, depth)  # groups handed to the sink before the oldest is confirmed
        self._outbox: list[Entry] = []
        self._outbox_bytes = 0
        self.bytes = 0  # outbox plus the group being published, until settled
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stopping = False
        self.give_up_at: float | None = None
        self.publish_failing = False  # true from a failed publish until the next successful one (readiness)

    def __len__(self) -> int:
        return len(self._outbox)

    # -- filling ----------------------------------------------------------------------------------------
    def queue(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        n = 0
        for e in entries:
            n += e.nbytes
        self._outbox.extend(entries)
        self._outbox_bytes += n
        self.bytes += n
        self._wake.set()

    async def room(self) -> None:
        """Wait while the outbox is over its byte bound (the worker frees it a group at a time)."""
        if self._outbox_bytes >= self.max_bytes:
            self._room.clear()
            self._wake.set()
            await self._room.wait()

    @property
    def idle(self) -> bool:
        return not self._outbox and self._idle.is_set()

    async def wait_idle(self) -> None:
        while self._outbox or not self._idle.is_set():
            self._wake.set()
            await self._idle.wait()
            await asyncio.sleep(0)

    # -- the worker -------------------------------------------------------------------------------------
    async def run(self) -> None:
        inflight: deque[_Group] = deque()
        while True:
            while self._outbox and len(inflight) < self.depth:
                inflight.append(await self._start(self._take()))
            if not inflight:
                self._idle.set()
                self._room.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            head = inflight[0]
            assert head.confirmed is not None
            if len(inflight) < self.depth and not head.confirmed.done():
                # room for another group: wait for the oldest's confirmation or for new records, whichever first
                self._wake.clear()
                if not self._outbox:
                    woken = asyncio.ensure_future(self._wake.wait())
                    try:
                        await asyncio.wait((head.confirmed, woken), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        woken.cancel()
                if not head.confirmed.done():
                    continue
            inflight.popleft()
            await self._finish(head)
            self.bytes -= head.nbytes
            if self._after is not None:
                self._after()

    def _take(self) -> _Group:
        """The next group: the outbox, or as much of it as ``max_group_bytes`` allows (a group is copied while it
        is published: the records built for the sink and the producer's buffers; bounding it bounds them)."""
        self._idle.clear()
        if self._outbox_bytes <= self.max_group_bytes:
            box, self._outbox = self._outbox, []
            nbytes, self._outbox_bytes = self._outbox_bytes, 0
        else:
            cut, nbytes = 0, 0
            outbox, limit = self._outbox, self.max_group_bytes
            while cut < len(outbox) and (cut == 0 or nbytes + outbox[cut].nbytes <= limit):
                nbytes += outbox[cut].nbytes
                cut += 1
            box, self._outbox = outbox[:cut], outbox[cut:]
            self._outbox_bytes -= nbytes
        if self._outbox_bytes < self.max_bytes:
            self._room.set()
        return _Group(box, nbytes)

    async def _start(self, group: _Group) -> _Group:
        """Plan the group's routes (the plug-in), build its records, hand them to the sink."""
        plugin = self.plugin
        group.plan = await plugin.plan(group.box) if plugin is not None else None
        records, dead, out = group.records, group.dead, group.out
        enc = self.encoder
        for e in group.box:
            if type(e) is Record:
                records.append(e)
                routes = e.routes
                if routes:
                    first = enc.record(routes[0].name, routes[0].topic, e)
                    out.append(first)
                    for route in routes[1:]:  # the same key, value and headers on every further route
                        out.append(OutRecord(route.name, route.topic, first.key, first.value, first.headers))
            else:
                assert isinstance(e, DeadRecord)
                dead.append(e)
                out.append(e.out)
        group.started = time.perf_counter()
        if not out:  # only records that matched no route: nothing to publish, settle them
            group.confirmed = completed()
            return group
        try:  # awaited here, not in a task of its own: groups reach the producer strictly in order
            confirmation: Awaitable[None] = await self.sink.enqueue(out)
        except (asyncio.CancelledError, Exception) as exc:
            reraise_if_cancelled(exc, self.stopping)
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            group.confirmed = failed
            return group
        group.confirmed = asyncio.ensure_future(confirmation)
        return group

    async def _finish(self, group: _Group) -> None:
        """Settle a group once the sink confirmed it (``Settlement.settle``: the after-confirm steps); a failed
        group is published again (or isolated) first."""
        assert group.confirmed is not None
        try:
            await group.confirmed
            if group.out:
                self.metrics.publish_latency.observe(time.perf_counter() - group.started)
                self.publish_failing = False
            published = group.out
        except (asyncio.CancelledError, Exception) as exc:
            reraise_if_cancelled(exc, self.stopping)
            self.publish_failing = True
            published = await self._republish(group, exc)
        now = self._clock()
        self._observe_latency(group.records, now)
        self._count(published)
        await self.settlement.settle(group.records, group.dead, group.plan)

    def _observe_latency(self, records: Sequence[Record], now: float) -> None:
        if not records:
            return
        hist = self.metrics.e2e_latency
        for r in records[:: max(1, len(records) // 64)]:
            hist.observe(now - r.tracker.arrival)

    def _count(self, published: Sequence[OutRecord]) -> None:
        """Per-route counters of records the sink confirmed; debug lines if enabled."""
        per_route: dict[str, int] = {}
        debug = logs.debug_enabled
        for rec in published:
            if rec.route == "deadletter":
                h = dict(rec.headers)
                log.warning("pipeline.dead_lettered", topic=rec.topic,
                            reason=h.get("dlq_reason", b"").decode(errors="replace"),
                            source=h.get("dlq_source", b"").decode(errors="replace"),
                            position=h.get("dlq_position", b"").decode(errors="replace"),
                            id=h["ce_id"].decode(errors="replace") if "ce_id" in h else input_ids(rec.value))
                continue
            per_route[rec.route] = per_route.get(rec.route, 0) + 1
            if debug:
                log.debug("pipeline.published", route=rec.route, topic=rec.topic, key=rec.key)
        for route, n in per_route.items():
            self.metrics.events_out.labels(route).inc(n)

    async def _republish(self, group: _Group, exc: BaseException) -> list[OutRecord]:
        """A group's confirmation failed: publish again what the broker did not acknowledge, with backoff until
        it is (a transient failure), or isolate it (``PublishError.permanent``: no retry can help). Returns the
        records the sink confirmed (all, unless some were isolated as unpublishable and replaced by dead letters).
        A permanent failure counts no publish error here: the isolation counts each record that fails again."""
        pending = _unconfirmed(exc, group.out)
        if isinstance(exc, PublishError) and exc.permanent:
            return await self._isolate(group.box, group.out, pending)
        self.metrics.publish_errors.inc(len(pending))
        log.warning("pipeline.publish_failed", records=len(group.out), unconfirmed=len(pending),
                    error=f"{type(exc).__name__}: {exc}")
        try:
            await self._publish_with_retry(pending)
            return group.out
        except _Permanent as perm:
            return await self._isolate(group.box, group.out, perm.unconfirmed)

    async def _publish_with_retry(self, out: Sequence[OutRecord]) -> None:
        """Publish until the sink confirmed every record: after a transient failure only what it did not
        acknowledge is published again (in order), with backoff; a permanent one raises ``_Permanent``. Each
        record of a failed attempt counts one publish error."""
        retries = self._backoff.retries()
        pending: Sequence[OutRecord] = out
        while True:
            t0 = time.perf_counter()
            try:
                await self.sink.publish(pending)
                self.metrics.publish_latency.observe(time.perf_counter() - t0)
                self.publish_failing = False
                return
            except (asyncio.CancelledError, Exception) as exc:
                reraise_if_cancelled(exc, self.stopping)
                # a CancelledError raised inside the client library (this task was not cancelled) is a
                # failed attempt like any other: retried, never the silent end of the delivery worker
                pending = _unconfirmed(exc, pending)
                self.metrics.publish_errors.inc(len(pending))
                self.publish_failing = True
                if isinstance(exc, PublishError) and exc.permanent:
                    raise _Permanent(exc, pending) from exc
                delay = retries.failed()
                log.warning(
                    "pipeline.publish_failed", attempt=retries.failures, records=len(pending), retry_in=delay,
                    error=f"{type(exc).__name__}: {exc}",
                )
                if self.give_up_at is not None and self._clock() > self.give_up_at:
                    raise
                await asyncio.sleep(delay)

    async def _isolate(self, box: Sequence[Entry], out: Sequence[OutRecord],
                       unconfirmed: Sequence[OutRecord]) -> list[OutRecord]:
        """A publish failed for good: publish the ``unconfirmed`` records one by one (each route separately) and
        dead-letter what cannot be published; transient failures on the way are retried as usual. ``out`` is the
        group's records as ``_start`` built them from ``box``: what is not in ``unconfirmed`` was acknowledged."""
        todo = {id(r) for r in unconfirmed}
        published = [r for r in out if id(r) not in todo]
        enc = self.encoder
        j = 0  # walks ``out`` in step with ``box``
        for e in box:
            if isinstance(e, DeadRecord):  # a dead letter always fits the broker's limit (it is truncated)
                rec, j = out[j], j + 1
                if id(rec) in todo:
                    await self._publish_or_report([rec], published)
                continue
            kept: list[Route] = []
            for route in e.routes:
                rec, j = out[j], j + 1
                if id(rec) not in todo:
                    kept.append(route)
                    continue
                try:
                    await self._publish_with_retry([rec])
                    published.append(rec)
                    kept.append(route)
                    continue
                except _Permanent as perm:
                    reason = f"publish failed: {type(perm.error).__name__}: {perm.error}"
                source, event_id = e.dkey
                reason = f"{reason} (route {route.name}, topic {route.topic})"
                # the dead letter carries the event itself (structured JSON, as much as fits): inspectable, and
                # a redrive can feed it back (normalizing the bridge's own output is idempotent)
                dl = enc.dead_letter(DeadLetter(self.deadletter_topic, reason, enc.event_json(e), source,
                                                e.position), e)
                self.metrics.deadlettered.labels("unpublishable").inc()
                log.error("pipeline.unpublishable", id=event_id, source=source, route=route.name,
                          reason=reason)
                await self._publish_or_report([dl], published)
            e.routes = tuple(kept)  # what was published, for the plug-in
        return published

    async def _publish_or_report(self, recs: list[OutRecord], published: list[OutRecord]) -> None:
        try:
            await self._publish_with_retry(recs)
            published.extend(recs)
        except _Permanent as perm:  # cannot happen for a bounded dead letter unless the broker's limit is lower
            self.metrics.undeliverable.inc()
            log.error("pipeline.dead_letter_dropped", error=str(perm.error),
                      reason=dict(recs[0].headers).get("dlq_reason", b"").decode(errors="replace"))


class _Permanent(Exception):
    def __init__(self, error: BaseException, unconfirmed: Sequence[OutRecord]) -> None:
        super().__init__(str(error))
        self.error = error
        self.unconfirmed = unconfirmed


def _unconfirmed(exc: BaseException, attempted: Sequence[OutRecord]) -> Sequence[OutRecord]:
    """What a failed publish of ``attempted`` left unacknowledged: the sink's word when it gives one, else all."""
    if isinstance(exc, PublishError) and exc.unconfirmed is not None:
        return exc.unconfirmed
    return attempted
