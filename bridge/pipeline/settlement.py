"""Settlement: what happens once a record is published or deliberately dropped.

Settling a record remembers its id in the dedup store (so later copies are dropped), releases its unit on
the tracker of its source batch, and releases the copies that were waiting for it (duplicates of an event
still in flight keep their own source position until the original settles: without that, a crash between
the copy's ack and the original's publish would lose the event). A batch whose units are all released is
acked upstream, exactly once, in a task of its own. A batch the pipeline gives up undelivered (shutdown past its
grace period) is nacked instead, where its source asks for that (``SourceBatch.nack``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence

import structlog

from bridge.metrics import Metrics
from bridge.model import AckFn, SourceBatch
from bridge.pipeline.dedup import DedupKey, Deduplicator
from bridge.pipeline.records import DeadRecord, Record, Tracker

log = structlog.get_logger("bridge.pipeline")


class Settlement:
    """Dedup records, tracker releases and acks, for one pipeline."""

    def __init__(
        self, dedup: Deduplicator | None, metrics: Metrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.dedup = dedup
        self.metrics = metrics
        self._clock = clock
        self._waiting: dict[DedupKey, list[Tracker]] = {}  # duplicates of in-flight events, per key
        self._nacks: dict[Tracker, AckFn] = {}  # batches not yet done whose source wants a nack if given up
        self._ack_tasks: set[asyncio.Task[None]] = set()
        self._side_tasks: set[asyncio.Future[None]] = set()
        self.inflight = 0  # admitted events not yet settled
        self.last_progress = clock()
        """Monotonic time of the last settled unit or ack (readiness uses it to see stalls)."""

    # -- admission side -------------------------------------------------------------------------------
    def track(self, batch: SourceBatch, now: float) -> Tracker:
        tracker = Tracker(batch.ack, self._on_batch_done, batch.source, now)
        if batch.nack is not None:
            self._nacks[tracker] = batch.nack
        return tracker

    def wait_for_original(self, key: DedupKey, tracker: Tracker) -> None:
        """A copy of an in-flight event: its unit is released when the original settles."""
        self._waiting.setdefault(key, []).append(tracker)

    @property
    def waiting(self) -> int:
        """Copies held back until their original settles."""
        return sum(len(v) for v in self._waiting.values())

    # -- settling -------------------------------------------------------------------------------------
    async def delivered(self, records: Sequence[Record], dead: Sequence[DeadRecord]) -> None:
        """Records and dead letters confirmed by the sink: remember ids, release units, ack batches."""
        keys = [r.dkey for r in records]
        keys.extend(d.dkey for d in dead if d.dkey is not None)
        if self.dedup is not None and keys:
            try:
                await self.dedup.settle(keys)
            except Exception as exc:  # delivered anyway; a redelivery would be published again (at least once)
                log.error("pipeline.dedup_record_failed", error=f"{type(exc).__name__}: {exc}")
        self._release_records(records)
        for d in dead:
            d.tracker.release()
        if dead:
            self._release_waiting(d.dkey for d in dead if d.dkey is not None)
        self.last_progress = self._clock()

    def dropped(self, records: Sequence[Record]) -> None:
        """Deliberately dropped records (unrouted, late-dropped): remember their ids, release their units."""
        if not records:
            return
        if self.dedup is None:
            self._release_records(records)
            return
        task = asyncio.ensure_future(self.dedup.settle([r.dkey for r in records]))
        self._side_tasks.add(task)

        def done(t: asyncio.Future[None]) -> None:
            self._side_tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("pipeline.dedup_record_failed", error=str(t.exception()))
            self._release_records(records)

        task.add_done_callback(done)

    def forget(self, keys: Sequence[DedupKey]) -> None:
        """Admitted events that will never be published (processing failed, dead-lettered): not recorded, so a
        redrive of the dead letter is not taken for a duplicate; their waiting copies are released."""
        if self.dedup is not None and keys:
            self.dedup.forget(keys)
        self.inflight -= len(keys)
        self._release_waiting(keys)

    def _release_records(self, records: Sequence[Record]) -> None:
        self.inflight -= len(records)
        counts: dict[Tracker, int] = {}  # records of one batch travel together: one release call per batch
        for r in records:
            tr = r.tracker
            counts[tr] = counts.get(tr, 0) + 1
            r.value = r.meta = b""  # the reorder FIFO may still reference the record: drop its bytes now
        for tr, n in counts.items():
            tr.release(n)
        if self._waiting:
            self._release_waiting(r.dkey for r in records)
        self.last_progress = self._clock()

    def _release_waiting(self, keys: Iterable[DedupKey]) -> None:
        waiting = self._waiting
        if not waiting:
            return
        for key in keys:
            for tr in waiting.pop(key, ()):
                tr.release()

    # -- acks -----------------------------------------------------------------------------------------
    def _on_batch_done(self, tracker: Tracker) -> None:
        self.last_progress = self._clock()
        if self._nacks:
            self._nacks.pop(tracker, None)
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
            log.error("pipeline.ack_failed", source=tracker.source, error=str(exc))

    async def give_up(self, unadmitted: Sequence[SourceBatch] = ()) -> int:
        """Nack every batch not yet done, and every ``unadmitted`` one (pulled but never submitted), whose source
        asked for it: the pipeline will not deliver them, their acks will not come, the sources redeliver them.
        Returns how many were nacked."""
        nacks = [(tracker.source, nack) for tracker, nack in self._nacks.items()]
        nacks.extend((b.source, b.nack) for b in unadmitted if b.nack is not None)
        self._nacks = {}
        results = await asyncio.gather(*(nack() for _, nack in nacks), return_exceptions=True)
        for (source, _), result in zip(nacks, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("pipeline.nack_failed", source=source, error=f"{type(result).__name__}: {result}")
        return len(nacks)

    async def wait(self) -> None:
        """Wait for pending dedup updates of dropped records and for running acks."""
        while self._side_tasks:
            await asyncio.gather(*list(self._side_tasks), return_exceptions=True)
        if self._ack_tasks:
            await asyncio.gather(*list(self._ack_tasks), return_exceptions=True)
