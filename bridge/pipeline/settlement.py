"""Settlement: the one owner of what happens once records are published (or deliberately dropped), and of the
count of events in flight.

After the sink confirmed a publish group, ``settle`` runs these steps, in this order, here and nowhere else
(docs/design.md, "Delivery"):

1. plug-in: the group's plan records what was published (``bridge.pipeline.plugin``: the last states of
   ``changes_only`` routes and the state topic);
2. dedup: the ids of the published records, and of the dead letters that stand for admitted events, are
   recorded, so later copies are dropped; copies of them that waited while they were in flight are released
   (without that wait, a crash between a copy's ack and the original's publish would lose the event);
3. units: each record's and dead letter's unit is released on the tracker of its source batch; a batch whose
   units are all released (and that is fully admitted) is complete;
4. positions: each complete batch is marked done with its source (``Release.mark``: no I/O; the source's
   checkpointer moves over the contiguous prefix of done batches), which gives the positions that moved;
5. writes: each source writes the positions that moved (``PositionWriter.flush``: Kafka commit, Event Hubs
   checkpoint, SQS delete), once per source, in a task of its own; a batch with a plain ``ack`` is acked in a
   task of its own.

Steps 1 and 2 touch external stores; steps 3 and 4 only count and mark, so they can also run before a group's
confirmation is committed (a transactional sink: 3, 4, send the positions with the transaction, commit, then 1
and 2, and 5 only for sources outside the transaction). Batches that complete outside a group (duplicates seen
before, records dropped on purpose, a batch sealed with nothing outstanding) go through steps 4 and 5 on the
next turn of the event loop. A batch the pipeline gives up undelivered (shutdown past its grace period) is
nacked instead, where its source asks for that (``SourceBatch.nack``).

``inflight`` (events admitted and not yet settled) is changed here only: ``admitted`` adds, settling, dropping,
forgetting and turning records into dead letters subtract.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import structlog

from bridge.metrics import MetricGroup, Metrics
from bridge.model import AckFn, PositionWriter, SourceBatch
from bridge.pipeline.dedup import DedupKey, Deduplicator
from bridge.pipeline.plugin import GroupPlan
from bridge.pipeline.records import DeadRecord, Record, Tracker

log = structlog.get_logger("bridge.pipeline")


class SettlementMetrics(MetricGroup):
    """What settlement writes."""

    def __init__(self, m: Metrics) -> None:
        super().__init__(m)
        self.batches_acked = m.counter("bridge_batches_acked", "Source batches released upstream, per source",
                                       ["source"])
        self.ack_errors = m.counter("bridge_ack_errors", "Source position releases that failed, per source",
                                    ["source"])


class Settlement:
    """The after-confirm steps and the in-flight count of one pipeline (see the module docstring)."""

    def __init__(
        self, dedup: Deduplicator | None, metrics: Metrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.dedup = dedup
        self.metrics = SettlementMetrics(metrics)
        self._clock = clock
        self._waiting: dict[DedupKey, list[Tracker]] = {}  # duplicates of in-flight events, per key
        self._nacks: dict[Tracker, AckFn] = {}  # batches not yet done whose source wants a nack if given up
        self._complete: list[Tracker] = []  # batches complete since the last steps 4 and 5
        self._scheduled = False
        self._tasks: set[asyncio.Future[None]] = set()  # position writes, acks, settling of dropped records
        self._inflight = 0
        self.last_progress = clock()
        """Monotonic time of the last settled unit or ack (readiness uses it to see stalls)."""

    @property
    def inflight(self) -> int:
        """Events admitted and not yet settled."""
        return self._inflight

    # -- admission side -------------------------------------------------------------------------------
    def track(self, batch: SourceBatch, now: float) -> Tracker:
        tracker = Tracker(batch.ack, self._on_complete, batch.source, now, batch.release, batch.lane)
        if batch.nack is not None:
            self._nacks[tracker] = batch.nack
        return tracker

    def admitted(self, n: int) -> None:
        """``n`` fresh events of a batch are now in flight."""
        self._inflight += n

    def seen_before(self, tracker: Tracker, n: int) -> None:
        """``n`` events of the batch were delivered before (dedup): their units are released at once."""
        if n:
            tracker.release(n)

    def wait_for_original(self, key: DedupKey, tracker: Tracker) -> None:
        """A copy of an in-flight event: its unit is released when the original settles (step 2)."""
        self._waiting.setdefault(key, []).append(tracker)

    @property
    def waiting(self) -> int:
        """Copies held back until their original settles."""
        return sum(len(v) for v in self._waiting.values())

    # -- the after-confirm order ----------------------------------------------------------------------
    async def settle(self, records: Sequence[Record], dead: Sequence[DeadRecord], plan: GroupPlan | None) -> None:
        """A group the sink confirmed: steps 1 to 5 of the module docstring."""
        # 1. plug-in: the plan records what was published
        if plan is not None:
            await plan.settle()
        # 2. dedup: ids recorded, copies that waited for them released
        await self.record_ids(records, dead)
        # 3. units: released per batch; complete batches collected
        self.release_units(records, dead)
        # 4. and 5. positions marked, then written by their sources
        self.release_positions()

    async def record_ids(self, records: Sequence[Record], dead: Sequence[DeadRecord]) -> None:
        """Step 2: remember the ids (a failing store was retried or bypassed by the guard; a failure here still
        settles: a redelivery would be published again, at least once) and release the copies that waited."""
        keys = [r.dkey for r in records]
        keys.extend(d.dkey for d in dead if d.dkey is not None)
        if self.dedup is not None and keys:
            try:
                await self.dedup.settle(keys)
            except Exception as exc:
                log.error("pipeline.dedup_record_failed", error=f"{type(exc).__name__}: {exc}")
        if self._waiting:
            self._release_waiting(keys)

    def release_units(self, records: Sequence[Record], dead: Sequence[DeadRecord]) -> None:
        """Step 3: one unit per record and dead letter, one release call per batch; records leave the in-flight
        count (dead letters standing for events left it when they became dead letters)."""
        self._inflight -= len(records)
        counts: dict[Tracker, int] = {}  # records of one batch travel together
        for r in records:
            tr = r.tracker
            counts[tr] = counts.get(tr, 0) + 1
            r.value = r.meta = b""  # the reorder FIFO may still reference the record: drop its bytes now
        for d in dead:
            tr = d.tracker
            counts[tr] = counts.get(tr, 0) + 1
        for tr, n in counts.items():
            tr.release(n)
        self.last_progress = self._clock()

    def release_positions(self) -> None:
        """Steps 4 and 5 for every batch complete since the last call."""
        complete, self._complete = self._complete, []
        if not complete:
            return
        # 4. positions: complete batches marked done with their sources (no I/O)
        writers: dict[PositionWriter, list[str]] = {}
        for tr in complete:
            release = tr.batch_release
            if release is not None:
                release.mark()
                sources = writers.get(release.writer)
                if sources is None:
                    writers[release.writer] = [tr.source]
                else:
                    sources.append(tr.source)
            elif tr.ack is None:  # nothing to give back (replay, tests)
                self.metrics.batches_acked.labels(tr.source).inc()
        # 5. writes: one per source, then the plain acks, each in a task of its own
        for writer, sources in writers.items():
            self._spawn(self._write(writer, sources))
        for tr in complete:
            if tr.batch_release is None and tr.ack is not None:
                self._spawn(self._ack(tr.ack, tr.source))

    # -- outside a group ------------------------------------------------------------------------------
    def dropped(self, records: Sequence[Record]) -> None:
        """Deliberately dropped records (unrouted, late-dropped): steps 2 to 5, in a task when dedup records ids."""
        if not records:
            return
        if self.dedup is None:
            self.release_units(records, ())
            return
        self._spawn(self.settle(records, (), None))

    def forget(self, keys: Sequence[DedupKey]) -> None:
        """Admitted events that will never be published (processing failed, dead-lettered): not recorded, so a
        redrive of the dead letter is not taken for a duplicate; they leave the in-flight count and their waiting
        copies are released."""
        if self.dedup is not None and keys:
            self.dedup.forget(keys)
        self._inflight -= len(keys)
        self._release_waiting(keys)

    def became_dead_letters(self, n: int) -> None:
        """``n`` admitted events turned into dead letters (late policy ``deadletter``; a poison event under
        exactly-once): no longer in flight as events (their ids are recorded once the dead letters are published)."""
        self._inflight -= n

    def _release_waiting(self, keys: Iterable[DedupKey]) -> None:
        waiting = self._waiting
        if not waiting:
            return
        for key in keys:
            for tr in waiting.pop(key, ()):
                tr.release()

    def _on_complete(self, tracker: Tracker) -> None:
        """A batch's last unit was released: steps 4 and 5 run at the end of the group being settled, or on the
        next turn of the loop when no group is (a batch complete at admission or through a dropped record)."""
        self.last_progress = self._clock()
        if self._nacks:
            self._nacks.pop(tracker, None)
        self._complete.append(tracker)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._release_scheduled)

    def _release_scheduled(self) -> None:
        self._scheduled = False
        self.release_positions()

    # -- step 5 ---------------------------------------------------------------------------------------
    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, writer: PositionWriter, sources: list[str]) -> None:
        try:
            await writer.flush()
        except Exception as exc:  # the source keeps the positions and retries; at least once holds
            for source in sources:
                self.metrics.ack_errors.labels(source).inc()
            log.error("pipeline.ack_failed", source=sources[0], batches=len(sources), error=str(exc))
            return
        self.last_progress = self._clock()
        for source in sources:
            self.metrics.batches_acked.labels(source).inc()

    async def _ack(self, ack: AckFn, source: str) -> None:
        try:
            await ack()
            self.metrics.batches_acked.labels(source).inc()
        except Exception as exc:  # the source will redeliver; at least once holds
            self.metrics.ack_errors.labels(source).inc()
            log.error("pipeline.ack_failed", source=source, error=str(exc))

    def reset(self) -> None:
        """Drop every batch in flight without releasing it (a rewind of exactly-once delivery: the sources go back
        to their committed offsets and deliver these batches again): no copies waiting, nothing in flight, and the
        settling of dropped records under way cancelled."""
        self._waiting.clear()
        self._nacks.clear()
        self._complete.clear()
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._inflight = 0

    # -- giving up and waiting ------------------------------------------------------------------------
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
        """Wait for the settling of dropped records, the position writes and the acks under way."""
        self.release_positions()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            self.release_positions()
