"""The pipeline: admission -> ordering -> delivery -> settlement, batch oriented, at least once.

``submit`` takes one source batch through the stages:

1. admission (``admission.py``): normalize, dedup, route, encode once; parsed events die here;
2. ordering (``reorder.py``): the reorder buffer holds the compact records per subject; late ones follow the
   late policy;
3. delivery (``delivery.py``): the outbox and its worker publish, retry, isolate unpublishable records;
4. settlement (``settlement.py``): the after-confirm steps (the plug-in's plan settled, ids recorded, units
   released, positions marked and written) and the count of events in flight.

A plug-in (``plugin.py``: ``bridge.state``) decides per group which routes records go to; the pipeline declares
what it calls and imports nothing of it.

Everything held is bounded in bytes (``bridge.limits``): the reorder buffer flushes early, the outbox makes
``submit`` wait, and the sources (which charge the budget) stop fetching while it is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import structlog

from bridge.limits import MemoryBudget
from bridge.metrics import DEADLETTERED, MetricGroup, Metrics
from bridge.model import DeadLetter, Sink, SourceBatch
from bridge.pipeline.admission import Admission, NormalizeFn, default_normalize
from bridge.pipeline.dedup import Deduplicator
from bridge.pipeline.delivery import Delivery
from bridge.pipeline.plugin import GroupPlugin
from bridge.pipeline.records import DeadRecord, Record
from bridge.pipeline.reorder import ReorderBuffer
from bridge.pipeline.router import Router
from bridge.pipeline.settlement import Settlement
from bridge.pipeline.transactions import Transactions
from bridge.pipeline.trust import TrustPolicy
from bridge.pipeline.txn_delivery import TransactionalDelivery
from bridge.retry import PUBLISH, Backoff

log = structlog.get_logger("bridge.pipeline")

LatePolicy = Literal["emit", "drop", "deadletter"]
DEFAULT_OUTBOX_BYTES = 64 * 1024 * 1024


class PipelineMetrics(MetricGroup):
    """What the pipeline itself writes: ordering (late events, early releases) and the held-work gauges."""

    def __init__(self, m: Metrics) -> None:
        super().__init__(m)
        self.late = m.counter("bridge_late_events", "Late events, per late policy", ["policy"])
        self.reorder_early = m.counter("bridge_reorder_early_flushes",
                                       "Events released early because the buffer was full")
        self.reorder_events = m.gauge("bridge_reorder_buffer_events", "Events held in the reorder buffer")
        self.reorder_subjects = m.gauge("bridge_reorder_buffer_subjects", "Subjects with events in the reorder buffer")
        self.inflight = m.gauge("bridge_inflight_events", "Events accepted and not yet settled")
        self.held_bytes = m.gauge("bridge_held_bytes", "Bytes of events held, per stage (source: fetched, not yet "
                                  "admitted; reorder; delivery: outbox and in-flight publishes)", ["stage"])
        self.deadlettered = m.counter_of(DEADLETTERED)


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
        normalize: NormalizeFn = default_normalize,
        clock: Callable[[], float] = time.monotonic,
        budget: MemoryBudget | None = None,
        max_outbox_bytes: int = DEFAULT_OUTBOX_BYTES,
        retry_backoff: Backoff = PUBLISH,
        trust: TrustPolicy | None = None,
        plugin: GroupPlugin | None = None,
        delivery_depth: int = 2,
        transactions: Transactions | None = None,
    ) -> None:
        self.router = router
        self.sink = sink
        self.deadletter_topic = deadletter_topic
        self.dedup = dedup
        self.trust = trust
        self.reorder = reorder
        self.late_policy = late_policy
        self.metrics = metrics if metrics is not None else Metrics()
        self.stats = PipelineMetrics(self.metrics)
        self.budget = budget
        self._clock = clock
        self.encoder = sink.encoder
        self.settlement = Settlement(dedup, self.metrics, clock)
        self.plugin = plugin
        self.transactions = transactions
        self.admission = Admission(
            router, self.encoder, self.settlement, self.metrics, deadletter_topic=deadletter_topic, dedup=dedup,
            normalize=normalize, keep_raw=late_policy == "deadletter", trust=trust, plugin=plugin,
            keep_subject=transactions is not None and reorder is not None, replay_keys=transactions is not None,
        )
        common: dict[str, Any] = {
            "deadletter_topic": deadletter_topic, "max_bytes": max_outbox_bytes, "retry_backoff": retry_backoff,
            "clock": clock, "after_delivery": self._update_gauges, "plugin": plugin, "depth": delivery_depth,
        }
        if transactions is None:
            self.delivery: Delivery = Delivery(sink, self.encoder, self.settlement, self.metrics, **common)
        else:
            self.delivery = TransactionalDelivery(sink, self.encoder, self.settlement, self.metrics,
                                                  transactions=transactions, rewind=self.rewind,
                                                  dedup_ids=dedup is not None, **common)
        self._admitting = asyncio.Lock()  # a rewind happens between two admissions, never inside one
        self._worker: asyncio.Task[None] | None = None

    # -- what readiness and metrics read --------------------------------------------------------------
    @property
    def inflight(self) -> int:
        """Events admitted and not yet settled."""
        return self.settlement.inflight

    @property
    def publish_failing(self) -> bool:
        return self.delivery.publish_failing

    @property
    def last_progress(self) -> float:
        """Monotonic time of the last settled event or ack."""
        return self.settlement.last_progress

    # -- lifecycle ------------------------------------------------------------------------------------
    async def prepare(self) -> None:
        """What must exist before the first publish (the plug-in's: the state topic)."""
        if self.plugin is not None:
            await self.plugin.start(self.sink)

    def start(self) -> asyncio.Task[None]:
        """Start the delivery worker (once); return it, so a supervisor can notice if it ever ends."""
        if self._worker is None:
            self._worker = asyncio.create_task(self.delivery.run(), name="bridge-delivery")
        return self._worker

    async def flush(self) -> None:
        """Release everything held in the reorder buffer and wait until all of it is delivered and acked."""
        if self.reorder is not None:
            self._queue_ready(self.reorder.drain())
        await self.wait_idle()

    async def wait_idle(self) -> None:
        self.start()
        await self.delivery.wait_idle()
        await self.settlement.wait()
        self._update_gauges()

    async def close(self, grace: float = 25.0, unadmitted: Sequence[SourceBatch] = ()) -> None:
        """Drain (reorder buffer, outbox, acks) for at most ``grace`` seconds, then stop the worker; batches still
        undelivered then, and ``unadmitted`` ones (pulled from a source, never submitted), are given up (nacked
        where their source asks for it)."""
        self.delivery.give_up_at = self._clock() + grace
        drained = False
        if self._worker is not None and self._worker.done():
            log.error("pipeline.delivery_worker_gone", outbox=len(self.delivery), inflight=self.inflight,
                      detail="undelivered events stay unacknowledged upstream")
        else:
            try:
                await asyncio.wait_for(self.flush(), timeout=grace)
                drained = True
            except TimeoutError:
                log.warning("pipeline.drain_timeout", outbox=len(self.delivery), inflight=self.inflight,
                            detail="shutdown grace period exceeded; undelivered events stay unacknowledged upstream")
        self.delivery.stopping = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None
        if not drained or unadmitted:
            given_up = await self.settlement.give_up(unadmitted)
            if given_up:
                log.info("pipeline.batches_given_up", batches=given_up,
                         detail="undelivered, given back to their sources")

    # -- the hot path ---------------------------------------------------------------------------------
    async def submit(self, batch: SourceBatch) -> None:
        """Take one source batch through admission and ordering into the outbox."""
        self.start()
        await self.delivery.room()
        txn = self.transactions
        if txn is None:
            await self._admit(batch)
            return
        async with self._admitting:
            if not txn.current(batch.lane):  # fetched before a rewind: its source delivers it again
                if self.budget is not None and batch.nbytes:
                    self.budget.refund("source", batch.nbytes)
                return
            await self._admit(batch)

    async def _admit(self, batch: SourceBatch) -> None:
        now = self._clock()
        tracker = self.settlement.track(batch, now)
        admitted = await self.admission.admit(batch, tracker)
        if self.budget is not None and batch.nbytes:
            self.budget.refund("source", batch.nbytes)
        self.delivery.queue(admitted.dead)
        records = admitted.records
        if self.reorder is not None:
            early, late = self.reorder.push(records, now)
            if early:
                self.stats.reorder_early.inc(len(early))
            ready: list[Record | DeadRecord] = [*early, *self.reorder.expire(now)]
            if late:
                ready.extend(self._apply_late_policy(late))
            self._queue_ready(ready)
        else:
            self._queue_ready(records)
        tracker.seal()
        self._update_gauges()

    async def rewind(self) -> None:
        """Exactly-once delivery: drop everything held (reorder buffer, in-flight batches, dedup's and the plug-in's
        in-flight decisions), have the transactions rewind the sources, and restore the durable state read back
        (``bridge.pipeline.transactions``). Called by the delivery worker, which dropped its outbox first."""
        txn = self.transactions
        assert txn is not None
        async with self._admitting:
            if self.reorder is not None:
                self.reorder.reset()
            if self.dedup is not None:
                self.dedup.reset()
            if self.plugin is not None:
                self.plugin.reset()
            self.settlement.reset()
            state = await txn.rewind()
            if self.dedup is not None:
                self.dedup.restore(state.ids)
            if self.reorder is not None:
                self.reorder.restore((hash(key), seq) for key, seq in state.seqs.items())
            if self.plugin is not None:
                self.plugin.restore(state.plugin)
            self._update_gauges()

    def tick(self) -> None:
        """Release reorder-buffer records whose max_delay has passed."""
        if self.reorder is not None:
            ready = self.reorder.expire(self._clock())
            if ready:
                self._queue_ready(ready)
        self._update_gauges()

    def next_deadline(self) -> float | None:
        return self.reorder.next_deadline() if self.reorder is not None else None

    # -- internals ------------------------------------------------------------------------------------
    def _queue_ready(self, ready: Sequence[Record | DeadRecord]) -> None:
        self.delivery.queue(ready)

    def _apply_late_policy(self, late: list[Record]) -> list[Record | DeadRecord]:
        self.stats.late.labels(self.late_policy).inc(len(late))
        if self.late_policy == "emit":
            for rec in late:
                rec.late = True
            return list(late)
        if self.late_policy == "drop":
            self.settlement.dropped(late)
            return []
        dead: list[Record | DeadRecord] = []
        for rec in late:
            rec.late = True
            source, event_id = rec.dkey
            reason = (f"late event: sequence {rec.seq} is older than one already emitted for its subject "
                      f"(event {event_id!r})")
            body = rec.raw if rec.raw is not None else (self.encoder.event_json(rec) if rec.meta else b"")
            dl = DeadLetter(self.deadletter_topic, reason, body, source, "")
            dead.append(DeadRecord(self.encoder.dead_letter(dl, rec), rec.tracker, "late", rec.dkey))
        self.settlement.became_dead_letters(len(late))
        self.stats.deadlettered.labels("late").inc(len(dead))
        return dead

    def _update_gauges(self) -> None:
        m = self.stats
        if self.reorder is not None:
            m.reorder_events.set(self.reorder.size)
            m.reorder_subjects.set(self.reorder.subjects)
        m.inflight.set(self.settlement.inflight)
        budget = self.budget
        if budget is not None:
            if self.reorder is not None:
                budget.set("reorder", self.reorder.bytes)
            budget.set("delivery", self.delivery.bytes)
            for stage, held in budget.held.items():
                m.held_bytes.labels(stage).set(held)
