"""The pipeline: normalize -> dedup -> reorder -> route -> sink, batch oriented, at least once.

``submit`` takes one source batch through normalize, dedup, reorder and routing synchronously (one await
at most, for a remote dedup store) and appends the resulting deliveries to the outbox. A single delivery
worker publishes the whole outbox in one sink call while the next one fills (group commit: ordering is
kept, and batches grow with load). After the sink confirms, the events are settled: their ids recorded in
the dedup store, and their batches' trackers released; a batch whose events are all settled is acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import orjson
import structlog

from bridge import logs
from bridge.aio import reraise_if_cancelled
from bridge.envelope import CloudEvent
from bridge.metrics import Metrics
from bridge.model import DeadLetter, Delivery, RawMessage, Routed, Sink, SourceBatch
from bridge.pipeline.dedup import FRESH, INFLIGHT, SEEN, DedupKey, Deduplicator
from bridge.pipeline.reorder import ReorderBuffer
from bridge.pipeline.router import Router
from bridge.pipeline.tracking import Item, Tracker
from bridge.pipeline.trust import TrustPolicy, untrusted_body

log = structlog.get_logger("bridge.pipeline")

LatePolicy = Literal["emit", "drop", "deadletter"]
NormalizeFn = Callable[[RawMessage], tuple[list[CloudEvent], list[Exception]]]


def _default_normalize(msg: RawMessage) -> tuple[list[CloudEvent], list[Exception]]:
    from bridge.normalize import normalize_all

    events, errors = normalize_all(msg)
    return events, list(errors)


MAX_DEADLETTER_BYTES = 32 * 1024


def _bounded(ev: CloudEvent) -> bytes:
    """The event's JSON for a dead letter; a huge event (likely why it failed) keeps its attributes and the
    start of its data only, so the dead letter itself can be published."""
    raw = ev.to_json()
    if len(raw) <= MAX_DEADLETTER_BYTES:
        return raw
    head = raw[: MAX_DEADLETTER_BYTES // 2].decode("utf-8", errors="ignore")
    return orjson.dumps({"truncated": True, "size": len(raw), "attributes": ev.attributes(), "json_prefix": head})


@dataclass(slots=True)
class _Outbox:
    deliveries: list[Delivery] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)  # routed events to settle after publish
    dead: list[Tracker] = field(default_factory=list)  # dead letters without an event (one unit each)
    received: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.deliveries)


class Pipeline:
    """One bridge pipeline feeding one sink. Not thread safe; run it on one event loop."""

    def __init__(
        self,
        router: Router,
        sink: Sink,
        *,
        deadletter_topic: str = "ml.events.deadletter",
        dedup: Deduplicator | None = None,
        reorder: ReorderBuffer | None = None,
        late_policy: LatePolicy = "emit",
        metrics: Metrics | None = None,
        normalize: NormalizeFn = _default_normalize,
        clock: Callable[[], float] = time.monotonic,
        max_outbox: int = 50_000,
        retry_backoff: tuple[float, float] = (0.05, 5.0),
        trust: TrustPolicy | None = None,
    ) -> None:
        self.router = router
        self.sink = sink
        self.deadletter_topic = deadletter_topic
        self.dedup = dedup
        self.reorder = reorder
        self.late_policy = late_policy
        self.trust = trust
        self.metrics = metrics if metrics is not None else Metrics()
        self._normalize = normalize
        self._clock = clock
        self.max_outbox = max_outbox
        self._backoff = retry_backoff
        self._outbox = _Outbox()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        self._ack_tasks: set[asyncio.Task[None]] = set()
        self._side_tasks: set[asyncio.Future[None]] = set()
        self._waiting: dict[DedupKey, list[Tracker]] = {}  # duplicates of in-flight events, per key
        self._stopping = False
        self._give_up_at: float | None = None
        self.inflight = 0
        self.publish_failing = False  # true from a failed publish until the next successful one (readiness)
        self.last_progress = clock()  # monotonic time of the last settled event or acked batch (stall detection)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Start the delivery worker (once); return it, so a supervisor can notice if it ever ends."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._deliver_loop(), name="bridge-delivery")
        return self._worker

    async def flush(self) -> None:
        """Release everything held in the reorder buffer and wait until all of it is delivered and acked."""
        if self.reorder is not None:
            self._route_and_queue(self.reorder.drain())
        await self.wait_idle()

    async def wait_idle(self) -> None:
        self.start()
        while len(self._outbox) or not self._idle.is_set():
            self._wake.set()
            await self._idle.wait()
            await asyncio.sleep(0)
        while self._side_tasks:
            await asyncio.gather(*list(self._side_tasks), return_exceptions=True)
        if self._ack_tasks:
            await asyncio.gather(*list(self._ack_tasks), return_exceptions=True)

    async def close(self, grace: float = 25.0) -> None:
        """Drain (reorder buffer, outbox, acks) for at most ``grace`` seconds, then stop the worker."""
        self._give_up_at = self._clock() + grace
        if self._worker is not None and self._worker.done():
            log.error("delivery worker is gone; undelivered events stay unacknowledged upstream",
                      outbox=len(self._outbox), inflight=self.inflight)
            self._worker = None
            return
        try:
            await asyncio.wait_for(self.flush(), timeout=grace)
        except TimeoutError:
            log.warning(
                "shutdown grace period exceeded; undelivered events stay unacknowledged upstream",
                outbox=len(self._outbox),
                inflight=self.inflight,
            )
        self._stopping = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None

    # -- the hot path ------------------------------------------------------------------------------
    async def submit(self, batch: SourceBatch) -> None:
        """Take one source batch through normalize, dedup, reorder and routing."""
        self.start()
        if len(self._outbox) >= self.max_outbox:
            self._room.clear()
            self._wake.set()
            await self._room.wait()
        now = self._clock()
        m = self.metrics
        tracker = Tracker(batch.ack, self._on_batch_done, batch.source)
        items: list[Item] = []
        normalize = self._normalize
        dead: list[DeadLetter] = []
        keep_raw = self.late_policy == "deadletter"  # the raw body is needed only to dead-letter late events
        trust = self.trust
        untrusted: list[DeadLetter] = []
        for msg in batch.messages:
            events, errors = normalize(msg)
            raw = msg.body if keep_raw else b""
            for ev in events:
                reason = trust.check(ev, msg.source) if trust is not None else None
                if reason is not None:  # never routed, never seen by dedup (bridge/pipeline/trust.py)
                    body = untrusted_body(msg, ev, len(events))
                    untrusted.append(DeadLetter(self.deadletter_topic, reason, body, msg.source, msg.position, ev))
                    continue
                items.append(Item(ev, tracker, raw, msg.position, msg.source, now))
            if errors:  # one dead letter per message, with every element's reason
                reason = "; ".join(getattr(err, "reason", None) or str(err) for err in errors)
                dead.append(DeadLetter(self.deadletter_topic, reason, msg.body, msg.source, msg.position))
        source = batch.source or (batch.messages[0].source if batch.messages else "")
        m.messages_in.labels(source).inc(len(batch.messages))
        m.events_in.labels(source).inc(len(items) + len(untrusted))
        if dead:
            tracker.hold(len(dead))
            self._queue_dead(dead, [tracker] * len(dead), "invalid")
        if untrusted:
            m.untrusted.labels(source).inc(len(untrusted))
            tracker.hold(len(untrusted))
            self._queue_dead(untrusted, [tracker] * len(untrusted), "untrusted")
        tracker.hold(len(items))
        if self.dedup is not None and items:
            codes = await self.dedup.split([it.event.dedup_key for it in items])
            fresh = [it for it, c in zip(items, codes, strict=True) if c == FRESH]
            ndup = len(items) - len(fresh)
            if ndup:
                m.duplicates.labels(source).inc(ndup)
                waiting = self._waiting
                released = 0
                for it, c in zip(items, codes, strict=True):
                    if c == SEEN:
                        released += 1
                    elif c == INFLIGHT:  # released only when the copy in flight settles (else a crash loses it)
                        waiting.setdefault(it.event.dedup_key, []).append(tracker)
                if released:
                    tracker.release(released)
            items = fresh
        self.inflight += len(items)
        if self.reorder is not None:
            early, late = self.reorder.push(items, now)
            if early:
                m.reorder_early.inc(len(early))
            ready = early + self.reorder.expire(now)
            if late:
                ready.extend(self._apply_late_policy(late))
        else:
            ready = items
        self._route_and_queue(ready)
        tracker.seal()
        self._update_gauges()

    def tick(self) -> None:
        """Release reorder-buffer events whose max_delay has passed."""
        if self.reorder is not None:
            ready = self.reorder.expire(self._clock())
            if ready:
                self._route_and_queue(ready)
            self._update_gauges()

    def next_deadline(self) -> float | None:
        return self.reorder.next_deadline() if self.reorder is not None else None

    # -- internals ---------------------------------------------------------------------------------
    def _apply_late_policy(self, late: list[Item]) -> list[Item]:
        self.metrics.late.labels(self.late_policy).inc(len(late))
        if self.late_policy == "emit":
            for it in late:
                it.event = it.event.evolve(late=True)
            return late
        if self.late_policy == "drop":
            self._settle_dropped(late)
            return []
        dls = [
            DeadLetter(
                self.deadletter_topic,
                f"late event: sequence {it.event.sequence} is older than one "
                f"already emitted for subject {it.event.subject!r}",
                it.raw or it.event.to_json(),
                it.source,
                it.position,
                it.event,
            )
            for it in late
        ]
        out = self._outbox
        out.deliveries.extend(dls)
        out.items.extend(late)
        out.received.extend(it.arrival for it in late)
        self.metrics.deadlettered.labels("late").inc(len(dls))
        self._wake.set()
        return []

    def _route_and_queue(self, ready: Sequence[Item]) -> None:
        if not ready:
            return
        out = self._outbox
        unrouted: list[Item] = []
        match = self.router.match
        for it in ready:
            routes = match(it.event)
            if not routes:
                unrouted.append(it)
                continue
            ev = it.event
            for r in routes:
                out.deliveries.append(Routed(r.name, r.topic, ev))
                it.routes.append(r.name)
            out.items.append(it)
            out.received.append(it.arrival)
        if unrouted:
            by_source: dict[str, int] = {}
            for it in unrouted:
                by_source[it.source] = by_source.get(it.source, 0) + 1
            for src, n in by_source.items():
                self.metrics.filtered.labels(src).inc(n)
            self._settle_dropped(unrouted)
        self._wake.set()

    def _queue_dead(self, dls: list[DeadLetter], trackers: list[Tracker], kind: str) -> None:
        out = self._outbox
        out.deliveries.extend(dls)
        out.dead.extend(trackers)
        self.metrics.deadlettered.labels(kind).inc(len(dls))
        self._wake.set()

    def _settle_dropped(self, items: Sequence[Item]) -> None:
        """Deliberately dropped events (no route, late-dropped): remember their ids, release their units."""
        if self.dedup is not None:
            task = asyncio.ensure_future(self.dedup.settle([it.event.dedup_key for it in items]))
            self._track_side_task(task, items)
        else:
            self._release(items)

    def _track_side_task(self, task: asyncio.Future[None], items: Sequence[Item]) -> None:
        self._side_tasks.add(task)

        def done(t: asyncio.Future[None]) -> None:
            self._side_tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("dedup store update failed", error=str(t.exception()))
            self._release(items)

        task.add_done_callback(done)

    def _release(self, items: Sequence[Item]) -> None:
        self.last_progress = self._clock()
        self.inflight -= len(items)
        waiting = self._waiting
        counts: dict[Tracker, int] = {}  # items of one batch travel together: one release call per batch
        for it in items:
            tr = it.tracker
            counts[tr] = counts.get(tr, 0) + 1
        for tr, n in counts.items():
            tr.release(n)
        if waiting:
            for it in items:
                for tr in waiting.pop(it.event.dedup_key, ()):
                    tr.release()

    def _on_batch_done(self, tracker: Tracker) -> None:
        self.last_progress = self._clock()
        if tracker.ack is None:
            self.metrics.batches_acked.labels(tracker.source).inc()
            return
        task = asyncio.create_task(self._ack(tracker))
        self._ack_tasks.add(task)
        task.add_done_callback(self._ack_tasks.discard)

    async def _ack(self, tracker: Tracker) -> None:
        assert tracker.ack is not None
        try:
            await tracker.ack()
            self.metrics.batches_acked.labels(tracker.source).inc()
        except Exception as exc:  # the source will redeliver; at least once holds
            self.metrics.ack_errors.labels(tracker.source).inc()
            log.error("releasing source position failed", source=tracker.source, error=str(exc))

    def _update_gauges(self) -> None:
        m = self.metrics
        if self.reorder is not None:
            m.reorder_events.set(self.reorder.size)
            m.reorder_subjects.set(self.reorder.subjects)
        m.inflight.set(self.inflight)

    async def _deliver_loop(self) -> None:
        while True:
            if not len(self._outbox):
                self._idle.set()
                self._room.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            self._idle.clear()
            box, self._outbox = self._outbox, _Outbox()
            self._room.set()
            await self._publish_with_retry(box.deliveries)
            now = self._clock()
            if box.received:
                hist = self.metrics.e2e_latency
                for t in box.received[:: max(1, len(box.received) // 64)]:
                    hist.observe(now - t)
            self._count_and_log(box.deliveries)
            if self.dedup is not None and box.items:
                keys: list[DedupKey] = [it.event.dedup_key for it in box.items]
                try:
                    await self.dedup.settle(keys)
                except Exception as exc:
                    log.error("dedup store update failed", error=str(exc))
            self._release(box.items)
            for tr in box.dead:
                tr.release()
            self._update_gauges()

    def _count_and_log(self, deliveries: Sequence[Delivery]) -> None:
        """One pass over a published group: per-route counters, dead-letter warnings, debug lines if enabled."""
        per_route: dict[str, int] = {}
        debug = logs.debug_enabled
        for d in deliveries:
            if isinstance(d, Routed):
                per_route[d.route] = per_route.get(d.route, 0) + 1
                if debug:
                    ev = d.event
                    log.debug("published", id=ev.id, subject=ev.subject, source=ev.source, route=d.route, topic=d.topic)
            else:
                dev = d.event
                log.warning(
                    "dead-lettered",
                    reason=d.reason,
                    source=d.source,
                    position=d.position,
                    topic=d.topic,
                    id=dev.id if dev else None,
                    subject=dev.subject if dev else None,
                )
        for route, n in per_route.items():
            self.metrics.events_out.labels(route).inc(n)

    async def _isolate_permanent_failures(self, deliveries: list[Delivery]) -> None:
        """A publish failed for good: send the records one by one, and dead-letter those that cannot be
        published (the reason in the headers). Transient failures on the way are retried as usual."""
        for d in deliveries:
            try:
                await self.sink.publish([d])
                continue
            except (asyncio.CancelledError, Exception) as exc:
                reraise_if_cancelled(exc, self._stopping)
                if not getattr(exc, "permanent", False):
                    await self._publish_with_retry([d])
                    continue
                reason = f"publish failed: {type(exc).__name__}: {exc}"
            if isinstance(d, Routed):
                ev = d.event
                dl = DeadLetter(
                    self.deadletter_topic,
                    f"{reason} (route {d.route}, topic {d.topic})",
                    _bounded(ev),
                    ev.source,
                    "",
                    ev,
                )
                self.metrics.deadlettered.labels("unpublishable").inc()
                log.error(
                    "event not publishable; dead-lettered", id=ev.id, subject=ev.subject, route=d.route, reason=reason
                )
                await self._publish_with_retry([dl])
            else:
                self.metrics.undeliverable.inc()
                log.error(
                    "dead letter not publishable either; dropped",
                    reason=reason,
                    source=d.source,
                    position=d.position,
                    dead_letter_reason=d.reason,
                )

    async def _publish_with_retry(self, deliveries: list[Delivery]) -> None:
        delay, cap = self._backoff
        attempt = 0
        while True:
            t0 = time.perf_counter()
            try:
                await self.sink.publish(deliveries)
                self.metrics.publish_latency.observe(time.perf_counter() - t0)
                self.publish_failing = False
                return
            except (asyncio.CancelledError, Exception) as exc:
                reraise_if_cancelled(exc, self._stopping)
                # a CancelledError raised inside the client library (this task was not cancelled) is a
                # failed attempt like any other: retried, never the silent end of the delivery worker
                attempt += 1
                self.metrics.publish_errors.inc()
                self.publish_failing = True
                if getattr(exc, "permanent", False):
                    await self._isolate_permanent_failures(deliveries)
                    return
                log.warning(
                    "publish failed; retrying",
                    attempt=attempt,
                    records=len(deliveries),
                    error=f"{type(exc).__name__}: {exc}",
                )
                if self._give_up_at is not None and self._clock() > self._give_up_at:
                    raise
                await asyncio.sleep(delay)
                delay = min(cap, delay * 2)
