"""Transactional delivery: the outbox published in Kafka transactions (``delivery.guarantee: exactly_once``).

The worker takes the outbox a group at a time, as ``Delivery`` does, and hands each group to the transactions
(``bridge.pipeline.transactions``): the group's records, each with its lane, and what it changes of the durable
state. A transaction spans groups until it holds ``max_records`` records, is ``max_seconds`` old, or nothing
more waits in the outbox; then the worker commits it:

1. every group's confirmation is awaited (the broker has the records, not yet visible);
2. steps 3 and 4 of the after-confirm order (``bridge.pipeline.settlement``): units released, complete batches
   marked with their sources, which gives the offsets the transaction releases;
3. ``Transactions.commit``: those offsets go with the transaction, every lane commits;
4. steps 1 and 2, now that the outputs are committed: the plug-in's plans settle, the ids are recorded (in
   memory: the changelog records in the transaction are their durable copy), counters move.

Offsets released later (copies that waited for their original, batches with nothing to publish) are committed by
the next transaction, or by one with offsets only. Anything failing aborts every open transaction and rewinds the
pipeline (``rewind``): held work is dropped, the sources go back to their committed offsets and the durable state
is read back, so nothing is lost and nothing is published twice. A record larger than the sink takes is
dead-lettered in the same transaction as its neighbours (a refused record would doom the whole transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from bridge.aio import reraise_if_cancelled
from bridge.metrics import MetricGroup, Metrics
from bridge.model import DeadLetter, Encoder, Lane, OutRecord, Sink
from bridge.pipeline.delivery import Delivery, _Group
from bridge.pipeline.records import DeadRecord, Record
from bridge.pipeline.settlement import Settlement
from bridge.pipeline.transactions import TransactionAborted, Transactions, group_changes
from bridge.retry import PUBLISH

log = structlog.get_logger("bridge.pipeline")


class TransactionMetrics(MetricGroup):
    """What transactional delivery writes."""

    def __init__(self, m: Metrics) -> None:
        super().__init__(m)
        self.transactions = m.counter(
            "bridge_transactions", "Kafka transactions of exactly-once delivery, per outcome (committed, aborted)",
            ["outcome"])
        self.transaction_records = m.histogram(
            "bridge_transaction_records", "Records per committed transaction",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000))
        self.commit_latency = m.histogram("bridge_transaction_commit_seconds",
                                          "Time to send the offsets and commit a transaction")


@dataclass(slots=True, eq=False)
class _Sent:
    group: _Group
    confirmation: Awaitable[None]


class TransactionalDelivery(Delivery):
    """The outbox and its worker, in transactions (see the module docstring). ``rewind`` is the pipeline's: it
    drops held work and restores the durable state (``Pipeline.rewind``)."""

    def __init__(self, sink: Sink, encoder: Encoder, settlement: Settlement, metrics: Metrics, *,
                 transactions: Transactions, rewind: Callable[[], Awaitable[None]], dedup_ids: bool,
                 **kwargs: Any) -> None:
        super().__init__(sink, encoder, settlement, metrics, **kwargs)
        self.txn = transactions
        self._rewind_pipeline = rewind
        self._dedup_ids = dedup_ids  # dedup is on: the ids of settled events are durable state
        self.tx_metrics = TransactionMetrics(metrics)
        self._sent: list[_Sent] = []
        self._records = 0  # records in the open transaction
        self._began: float | None = None  # monotonic time the open transaction began
        self._aborts = PUBLISH.retries()

    # -- the worker -------------------------------------------------------------------------------------
    async def run(self) -> None:
        txn = self.txn
        txn.on_rewind_needed(self._wake.set)
        await self._rewind("start")  # the durable state of the lanes owned now, before anything is admitted
        while True:
            try:
                if txn.rewind_needed:
                    await self._abort_and_rewind("the sources' partitions moved, or a producer was fenced",
                                                 failed=False)
                    continue
                if self._outbox:
                    await self._send(self._take())
                    if self._due():
                        await self._commit()
                    continue
                if self._sent or txn.positions_pending():
                    await self._commit()
                    continue
                self._idle.set()
                self._room.set()
                self._wake.clear()
                # wake for new records, a rewind, or to commit offsets released outside a group
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, txn.max_seconds))
            except (asyncio.CancelledError, Exception) as exc:
                reraise_if_cancelled(exc, self.stopping)
                await self._abort_and_rewind(f"{type(exc).__name__}: {exc}")

    def _due(self) -> bool:
        return (self._records >= self.txn.max_records or not self._outbox
                or (self._began is not None and self._clock() - self._began >= self.txn.max_seconds))

    async def _send(self, group: _Group) -> None:
        """Plan the group, build its records (oversized ones become dead letters), hand them to the lanes."""
        plugin = self.plugin
        group.plan = await plugin.plan(group.box) if plugin is not None else None
        lanes: list[tuple[Lane, OutRecord]] = []
        records, dead = group.records, group.dead
        for e in group.box:
            if type(e) is Record:
                records.append(e)
                lane = e.tracker.lane
                assert lane is not None, "a transactional pipeline admits lane batches only"
                for route in e.routes:
                    out = self.encoder.record(route.name, route.topic, e)
                    if len(out.value) > self.encoder.max_record_bytes:
                        dl = self._oversized(e, route.name, route.topic, len(out.value))
                        lanes.append((lane, dl))
                        group.out.append(dl)
                        continue
                    lanes.append((lane, out))
                    group.out.append(out)
            else:
                assert isinstance(e, DeadRecord) and e.tracker.lane is not None
                dead.append(e)
                lanes.append((e.tracker.lane, e.out))
                group.out.append(e.out)
        changes = group_changes(records, dead, group.plan.changes() if group.plan is not None else (),
                                ids=self._dedup_ids)
        if self._began is None:
            self._began = self._clock()
        group.started = time.perf_counter()
        confirmation = await self.txn.send(lanes, changes)
        self._sent.append(_Sent(group, confirmation))
        self._records += len(lanes)

    def _oversized(self, e: Record, route: str, topic: str, size: int) -> OutRecord:
        source, event_id = e.dkey
        reason = (f"publish failed: record of {size} bytes exceeds max_request_bytes ({self.encoder.max_record_bytes})"
                  f" (route {route}, topic {topic})")
        self.metrics.deadlettered.labels("unpublishable").inc()
        log.error("pipeline.unpublishable", id=event_id, source=source, route=route, reason=reason)
        e.routes = tuple(r for r in e.routes if r.name != route)  # what was published, for the plug-in
        return self.encoder.dead_letter(
            DeadLetter(self.deadletter_topic, reason, self.encoder.event_json(e), source, e.position), e)

    async def _commit(self) -> None:
        """Steps 1 to 4 of the module docstring for every group of the open transaction."""
        sent, self._sent = self._sent, []
        for s in sent:  # 1. the broker has every record of the transaction
            await s.confirmation
        for s in sent:  # 2. units released, complete batches marked: the offsets this transaction releases
            self.settlement.release_units(s.group.records, s.group.dead)
        self.settlement.release_positions()
        t0 = time.perf_counter()
        await self.txn.commit()  # 3. offsets sent, every lane committed (raises TransactionAborted otherwise)
        self.tx_metrics.commit_latency.observe(time.perf_counter() - t0)
        self.tx_metrics.transactions.labels("committed").inc()
        self.tx_metrics.transaction_records.observe(self._records)
        self._records, self._began = 0, None
        self.publish_failing = False
        self._aborts.succeeded()
        now = self._clock()
        for s in sent:  # 4. what the committed groups recorded: plans settled, ids remembered, counters
            g = s.group
            if g.plan is not None:
                await g.plan.settle()
            await self.settlement.record_ids(g.records, g.dead)
            self._observe_latency(g.records, now)
            self._count(g.out)
            self.bytes -= g.nbytes
        self.settlement.release_positions()  # copies that waited for their originals: the next transaction's
        if self._after is not None:
            self._after()

    async def _abort_and_rewind(self, reason: str, *, failed: bool = True) -> None:
        """Abort what is open and rewind. ``failed``: a publish or commit failed (counted, backed off); else a
        rewind the transactions asked for (a rebalance, a fenced lane): an open transaction still counts."""
        delay = 0.0
        if failed or self._sent:
            self.tx_metrics.transactions.labels("aborted").inc()
            log.warning("pipeline.transaction_aborted", reason=reason, records=self._records,
                        detail="outputs discarded; rewinding to the committed offsets")
        if failed:
            self.metrics.publish_errors.inc()
            self.publish_failing = True
            delay = self._aborts.failed()
        try:
            await self.txn.abort()
        except Exception as exc:  # an abort that fails still leaves the transaction to time out: never committed
            reraise_if_cancelled(exc, self.stopping)
            log.warning("pipeline.abort_failed", error=f"{type(exc).__name__}: {exc}")
        if delay:
            await asyncio.sleep(delay)
        await self._rewind(reason)

    async def _rewind(self, reason: str) -> None:
        """Drop everything held (the open transaction's groups, the outbox) and restore the durable state."""
        for s in self._sent:
            if s.group.plan is not None:
                s.group.plan.discard()
        self._sent = []
        self._records, self._began = 0, None
        self._outbox, self._outbox_bytes, self.bytes = [], 0, 0
        self._room.set()  # an admission waiting for room gets it (and its batch is dropped with the rest)
        await self._rewind_pipeline()
        log.info("pipeline.rewound", reason=reason)

__all__ = ["TransactionAborted", "TransactionalDelivery"]
